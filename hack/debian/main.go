// Command debian writes the Debian package's generated documents (make deb):
//
//	go run ./hack/debian copyright [-pkg ./cmd/pve-autoscaler]     > copyright
//	go run ./hack/debian changelog -version V -date YYYY-MM-DD      > changelog
//
// copyright is the machine-readable (DEP-5) copyright file of the static
// binary: the project (Apache-2.0) and every Go module linked into it, read
// from the build graph (go list -deps, with the build's GOOS, GOARCH and
// CGO_ENABLED from the environment) and the license files in the module
// cache, plus the Go standard library. A license it does not recognise is
// an error: a new dependency cannot slip into the package unlisted.
//
// changelog is the Debian changelog (usr/share/doc/pve-autoscaler/changelog)
// made from CHANGELOG.md: its [Unreleased] section becomes the entry of the
// version being packaged.
//
// It lives in hack/, beside the other build tooling, because it is never
// linked into the binary; it uses only the standard library.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

const (
	upstream   = "pve-autoscaler"
	source     = "https://github.com/pve-autoscaler/pve-autoscaler"
	maintainer = "pve-autoscaler developers <pve-autoscaler@users.noreply.github.com>"
	holder     = "The pve-autoscaler authors"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: debian copyright|changelog [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var err error
	switch os.Args[1] {
	case "copyright":
		pkg := fs.String("pkg", "./cmd/pve-autoscaler", "the binary's main package")
		_ = fs.Parse(os.Args[2:])
		err = copyright(os.Stdout, *pkg)
	case "changelog":
		md := fs.String("md", "CHANGELOG.md", "the project's changelog")
		ver := fs.String("version", "", "the package version (required)")
		date := fs.String("date", "", "date of an unreleased entry, YYYY-MM-DD (required)")
		_ = fs.Parse(os.Args[2:])
		var data []byte
		if data, err = os.ReadFile(*md); err == nil {
			err = changelog(os.Stdout, data, *ver, *date)
		}
	default:
		err = fmt.Errorf("unknown document %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hack/debian %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// ---- copyright ----

type module struct {
	Path, Version, Dir string
	Main               bool
	Replace            *module
}

type pkg struct {
	ImportPath, Dir string
	Standard        bool
	GoFiles         []string
	Module          *module
}

// linked lists the non-standard modules the package links, with the Go
// files of each that are compiled in.
func linked(mainPkg string) (mods []*module, files map[string][]string, err error) {
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,Standard,GoFiles,Module", mainPkg).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list: %w", err)
	}
	files = map[string][]string{}
	seen := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, err
		}
		if p.Standard || p.Module == nil || p.Module.Main {
			continue
		}
		m := p.Module
		if m.Replace != nil {
			m = m.Replace
		}
		if m.Dir == "" {
			return nil, nil, fmt.Errorf("module %s %s is not in the module cache: go mod download", m.Path, m.Version)
		}
		for _, f := range p.GoFiles {
			files[m.Path] = append(files[m.Path], filepath.Join(p.Dir, f))
		}
		if !seen[m.Path] {
			seen[m.Path] = true
			mods = append(mods, m)
		}
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods, files, nil
}

var (
	licenseName = regexp.MustCompile(`(?i)^(licen[cs]e|copying)([.-].*)?$`)
	noticeName  = regexp.MustCompile(`(?i)^notice(\..*)?$`)
	spaces      = regexp.MustCompile(`[\s#*>]+`)
)

// commonLicenses are the licenses Debian ships in /usr/share/common-licenses:
// the copyright file points there instead of repeating them.
var commonLicenses = []string{"Apache-2.0", "MPL-2.0"}

// classify names the licenses whose well-known wording a license file holds.
func classify(text string) []string {
	t := strings.ToLower(spaces.ReplaceAllString(text, " "))
	t = strings.NewReplacer("“", `"`, "”", `"`, "’", "'").Replace(t)
	var ids []string
	has := func(s ...string) bool {
		for _, x := range s {
			if !strings.Contains(t, x) {
				return false
			}
		}
		return true
	}
	if has("apache license", "version 2.0", "terms and conditions for use, reproduction, and distribution") ||
		has("licensed under the apache license, version 2.0") {
		ids = append(ids, "Apache-2.0")
	}
	if has("mozilla public license", "version 2.0") {
		ids = append(ids, "MPL-2.0")
	}
	if has("permission is hereby granted, free of charge, to any person obtaining a copy") {
		ids = append(ids, "MIT")
	}
	if has("permission to use, copy, modify, and") && has("distribute this software for any purpose with or without fee is hereby granted") {
		ids = append(ids, "ISC")
	}
	if has("redistribution and use in source and binary forms") {
		if has("neither the name") || has("names of its contributors may be used") || has("name of the copyright holder nor") {
			ids = append(ids, "BSD-3-Clause")
		} else {
			ids = append(ids, "BSD-2-Clause")
		}
	}
	return ids
}

// elide replaces the full text of a common license inside a file that also
// carries another license by a pointer to Debian's copy.
func elide(text string) string {
	for _, span := range []struct{ start, end, name string }{
		{"Apache License\n", "END OF TERMS AND CONDITIONS", "Apache-2.0"},
		{"Mozilla Public License", "Mozilla Public License, v. 2.0.", "MPL-2.0"},
	} {
		i := strings.Index(text, span.start)
		if i > 0 {
			i = strings.LastIndex(text[:i], "\n") + 1
		}
		j := strings.LastIndex(text, span.end)
		if i < 0 || j < i {
			continue
		}
		end := j + len(span.end)
		if span.name == "Apache-2.0" { // and its appendix, up to the last line of the boilerplate
			if k := strings.LastIndex(text, "limitations under the License."); k > end {
				end = k + len("limitations under the License.")
			}
		}
		text = text[:i] + "[The " + span.name + " license: /usr/share/common-licenses/" + span.name + "]" + text[end:]
	}
	return text
}

var (
	copyrightLine = regexp.MustCompile(`(?i)^\W*(?:SPDX-FileCopyrightText:\s*)?copyright\s+(?:\(c\)\s*|©\s*)?(\d.*\S|(?:\(c\)|©).*\S)\s*$`)
	rights        = regexp.MustCompile(`(?i)[.,]?\s*all rights reserved\.?$`)
	yearsHolder   = regexp.MustCompile(`^((?:\d{4}(?:\s*[-–,]\s*(?:\d{4}|present))*[,\s]*)+)\s*(.*)$`)
)

// notices collects the copyright statements of texts, merging the years of
// each holder: "2014, 2016-2017 The Kubernetes Authors."
func notices(texts []string) []string {
	years := map[string]map[int]bool{}
	others := map[string]bool{}
	for _, text := range texts {
		sc := bufio.NewScanner(strings.NewReader(text))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			m := copyrightLine.FindStringSubmatch(line)
			if m == nil || strings.Contains(strings.ToLower(m[1]), "yyyy") || strings.Contains(m[1], "name of copyright owner") || strings.HasPrefix(strings.ToLower(m[1]), "notice") ||
				strings.HasPrefix(strings.ToLower(m[1]), "owner") || strings.HasPrefix(strings.ToLower(m[1]), "holder") ||
				strings.HasPrefix(strings.ToLower(m[1]), "license") {
				continue
			}
			s := rights.ReplaceAllString(strings.TrimSpace(m[1]), "")
			y := yearsHolder.FindStringSubmatch(s)
			if y == nil || y[2] == "" {
				others[s] = true
				continue
			}
			h := y[2]
			if years[h] == nil {
				years[h] = map[int]bool{}
			}
			for _, r := range regexp.MustCompile(`(\d{4})(?:\s*[-–]\s*(\d{4}))?`).FindAllStringSubmatch(y[1], -1) {
				a, _ := strconv.Atoi(r[1])
				b := a
				if r[2] != "" {
					b, _ = strconv.Atoi(r[2])
				}
				for ; a <= b && b-a < 100; a++ {
					years[h][a] = true
				}
			}
		}
	}
	var out []string
	for h, ys := range years {
		out = append(out, yearRanges(ys)+" "+h)
	}
	for s := range others {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func yearRanges(ys map[int]bool) string {
	var list []int
	for y := range ys {
		list = append(list, y)
	}
	sort.Ints(list)
	var parts []string
	for i := 0; i < len(list); {
		j := i
		for j+1 < len(list) && list[j+1] == list[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(list[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", list[i], list[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// field formats a multi-line deb822 field value: continuation lines start
// with a space, empty ones are " .".
func field(name, first string, body string) string {
	var b strings.Builder
	b.WriteString(name + ":")
	if first != "" {
		b.WriteString(" " + first)
	}
	b.WriteString("\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\t", "        ")
	body = strings.Trim(body, "\n")
	if body == "" {
		return b.String()
	}
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimRightFunc(line, unicode.IsSpace)
		if line == "" {
			line = "."
		}
		b.WriteString(" " + line + "\n")
	}
	return b.String()
}

func copyrightField(statements []string) string {
	if len(statements) == 1 {
		return field("Copyright", statements[0], "")
	}
	return field("Copyright", "", strings.Join(statements, "\n"))
}

// proxyPath escapes a module path for the module proxy: upper case letters
// become "!" and their lower case.
func proxyPath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteString("!" + string(unicode.ToLower(r)))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func goEnv(name string) (string, error) {
	out, err := exec.Command("go", "env", name).Output()
	return strings.TrimSpace(string(out)), err
}

func copyright(w io.Writer, mainPkg string) error {
	mods, files, err := linked(mainPkg)
	if err != nil {
		return err
	}
	goroot, err := goEnv("GOROOT")
	if err != nil {
		return err
	}
	gover, err := goEnv("GOVERSION")
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	b.WriteString("Upstream-Name: " + upstream + "\nUpstream-Contact: " + maintainer + "\nSource: " + source + "\n")
	b.WriteString(field("Comment", "", `/usr/bin/pve-autoscaler is a statically linked Go program: besides the
project's own code it contains the Go standard library and the Go modules
listed below, at the versions in go.mod. This file is generated from that
build graph by hack/debian when the package is built. The Files patterns
name where each module's source is placed by "go mod vendor".
.
Modules under the Mozilla Public License 2.0 (section 3.2, distribution in
Executable Form): the Source Code Form of each is available from the Go
module proxy at the address in its paragraph's Comment, and from the
upstream repository at the same version.`))
	b.WriteString("\nFiles: *\nCopyright: " + holder + "\nLicense: Apache-2.0\n")

	used := map[string]bool{"Apache-2.0": true}
	writeModule := func(pattern, comment string, statements []string, ids []string, texts []string) {
		b.WriteString("\nFiles: " + pattern + "\n")
		b.WriteString(copyrightField(statements))
		expr := strings.Join(ids, " and ")
		common := true
		for _, id := range ids {
			used[id] = true
			common = common && slices.Contains(commonLicenses, id)
		}
		if common {
			b.WriteString("License: " + expr + "\n")
		} else {
			b.WriteString(field("License", expr, strings.Join(texts, "\n\n")))
		}
		b.WriteString(field("Comment", "", comment))
	}

	// The Go standard library and runtime.
	goLicense, err := os.ReadFile(filepath.Join(goroot, "LICENSE"))
	if err != nil {
		return err
	}
	if ids := classify(string(goLicense)); !slices.Equal(ids, []string{"BSD-3-Clause"}) {
		return fmt.Errorf("%s/LICENSE: expected BSD-3-Clause, found %v", goroot, ids)
	}
	writeModule("go/*", "The Go standard library and runtime ("+gover+").",
		notices([]string{string(goLicense)}), []string{"BSD-3-Clause"}, []string{string(goLicense)})

	for _, m := range mods {
		entries, err := os.ReadDir(m.Dir)
		if err != nil {
			return err
		}
		var ids, texts, noticeTexts []string
		var sources []string
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(m.Dir, e.Name()))
			if err != nil {
				return err
			}
			switch {
			case licenseName.MatchString(e.Name()):
				found := classify(string(data))
				if len(found) == 0 {
					return fmt.Errorf("module %s %s: %s: unrecognised license; classify it in hack/debian", m.Path, m.Version, e.Name())
				}
				for _, id := range found {
					if !slices.Contains(ids, id) {
						ids = append(ids, id)
					}
				}
				sources = append(sources, string(data))
				if !all(found, commonLicenses) {
					texts = append(texts, strings.TrimSpace(elide(string(data))))
				}
			case noticeName.MatchString(e.Name()):
				noticeTexts = append(noticeTexts, strings.TrimSpace(string(data)))
				sources = append(sources, string(data))
			}
		}
		if len(ids) == 0 {
			return fmt.Errorf("module %s %s: no LICENSE or COPYING file in %s", m.Path, m.Version, m.Dir)
		}
		sort.Strings(ids)
		// The notices of the license files, and those in the headers of
		// the Go files linked in.
		var heads []string
		for _, f := range files[m.Path] {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if i := bytes.Index(data, []byte("\npackage ")); i >= 0 {
				data = data[:i] // the comment block before the package clause
			}
			heads = append(heads, string(data))
		}
		statements := notices(append(sources, heads...))
		if len(statements) == 0 {
			statements = []string{"the authors of " + m.Path + " (the module states no copyright notice)"}
		}
		comment := "Go module " + m.Path + " " + m.Version + "."
		if slices.Contains(ids, "MPL-2.0") {
			comment += "\nSource Code Form: https://proxy.golang.org/" + proxyPath(m.Path) + "/@v/" + proxyPath(m.Version) + ".zip"
		}
		for _, n := range noticeTexts {
			comment += "\n.\nIts NOTICE (Apache-2.0 section 4(d)):\n.\n" + n
		}
		writeModule("vendor/"+m.Path+"/*", comment, statements, ids, texts)
	}

	if used["Apache-2.0"] {
		b.WriteString("\nLicense: Apache-2.0\n" + field("Comment", "", "On Debian systems, the complete text of the Apache License, Version 2.0,\ncan be found in /usr/share/common-licenses/Apache-2.0."))
	}
	if used["MPL-2.0"] {
		b.WriteString("\nLicense: MPL-2.0\n" + field("Comment", "", "On Debian systems, the complete text of the Mozilla Public License,\nVersion 2.0, can be found in /usr/share/common-licenses/MPL-2.0."))
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func all(ids, set []string) bool {
	for _, id := range ids {
		if !slices.Contains(set, id) {
			return false
		}
	}
	return true
}

// ---- changelog ----

var (
	sectionLine = regexp.MustCompile(`^## \[([^\]]+)\](?:\s+-\s+(\d{4}-\d{2}-\d{2}))?\s*$`)
	debVersion  = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)
)

type entry struct {
	version, date string
	lines         []string
}

// changelog renders CHANGELOG.md ("## [Unreleased]", "## [1.2.0] - 2026-05-01",
// "- " bullets, "### " groups) as a Debian changelog whose first entry is
// version: its own section, or else [Unreleased] dated date.
func changelog(w io.Writer, md []byte, version, date string) error {
	if !debVersion.MatchString(version) {
		return fmt.Errorf("-version %q: expected a Debian version starting with a digit", version)
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return fmt.Errorf("-date %q: expected YYYY-MM-DD", date)
	}
	var entries []*entry
	var cur *entry
	for n, line := range strings.Split(string(md), "\n") {
		if m := sectionLine.FindStringSubmatch(line); m != nil {
			cur = &entry{version: m[1], date: m[2]}
			if strings.EqualFold(m[1], "unreleased") {
				cur.version = ""
			} else if m[2] == "" || !debVersion.MatchString(m[1]) {
				return fmt.Errorf("CHANGELOG.md:%d: expected ## [VERSION] - YYYY-MM-DD", n+1)
			}
			entries = append(entries, cur)
			continue
		}
		if cur == nil || strings.TrimSpace(line) == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "### "):
			cur.lines = append(cur.lines, "["+strings.TrimSpace(line[4:])+"]")
		case strings.HasPrefix(line, "- "):
			cur.lines = append(cur.lines, "* "+strings.TrimSpace(line[2:]))
		case strings.HasPrefix(line, "  ") && len(cur.lines) > 0:
			cur.lines[len(cur.lines)-1] += " " + strings.TrimSpace(line)
		default:
			return fmt.Errorf("CHANGELOG.md:%d: expected a \"- \" bullet, a \"### \" group or an indented continuation", n+1)
		}
	}
	released := slices.ContainsFunc(entries, func(e *entry) bool { return e.version == version })
	var out []*entry
	for _, e := range entries {
		if e.version == "" {
			if released {
				continue // the release's own section is the top entry
			}
			e.version, e.date = version, date
		}
		if len(e.lines) == 0 {
			e.lines = []string{"* No changes recorded."}
		}
		out = append(out, e)
	}
	if len(out) == 0 || out[0].version != version {
		return errors.New("CHANGELOG.md has neither an [Unreleased] section nor one for " + version + " first")
	}
	var b strings.Builder
	for i, e := range out {
		if i > 0 {
			b.WriteString("\n")
		}
		t, err := time.Parse(time.DateOnly, e.date)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s (%s) unstable; urgency=medium\n\n", upstream, e.version)
		for _, l := range e.lines {
			indent := "  "
			if strings.HasPrefix(l, "* ") {
				indent = "    "
			}
			for j, wl := range wrap(l, 78-len(indent)) {
				if j == 0 {
					b.WriteString("  " + wl + "\n")
				} else {
					b.WriteString(indent + wl + "\n")
				}
			}
		}
		fmt.Fprintf(&b, "\n -- %s  %s\n", maintainer, t.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = word
		} else if line == "" {
			line = word
		} else {
			line += " " + word
		}
	}
	return append(lines, line)
}
