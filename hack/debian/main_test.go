package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	apache, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		text string
		want []string
	}{
		"our LICENSE": {string(apache), []string{"Apache-2.0"}},
		"MIT":         {"The MIT License (MIT)\n\nCopyright (c) 2014 X\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software", []string{"MIT"}},
		"BSD-3":       {"Redistribution and use in source and binary forms, with or without\nmodification ... * Neither the name of Google Inc. nor", []string{"BSD-3-Clause"}},
		"BSD-2":       {"Redistribution and use in source and binary forms, with or without modification, are permitted", []string{"BSD-2-Clause"}},
		"MPL":         {"Mozilla Public License Version 2.0\n==================================", []string{"MPL-2.0"}},
		"ISC":         {"ISC License\n\nPermission to use, copy, modify, and/or distribute this software for any\npurpose with or without fee is hereby granted", []string{"ISC"}},
		"both":        {"MIT License\nPermission is hereby granted, free of charge, to any person obtaining a copy\n\nLicensed under the Apache License, Version 2.0 (the \"License\")", []string{"Apache-2.0", "MIT"}},
		"unknown":     {"All rights reserved. Do not copy.", nil},
	} {
		if got := classify(c.text); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

func TestNotices(t *testing.T) {
	got := notices([]string{
		"Copyright 2014 The Kubernetes Authors.\nsome text with copyright notice in it\n   Copyright [yyyy] [name of copyright owner]",
		"/*\nCopyright 2016 The Kubernetes Authors.\n*/",
		"// Copyright (c) 2009 The Go Authors. All rights reserved.",
		"// SPDX-FileCopyrightText: Copyright 2015-2017 go-swagger maintainers",
		"Copyright 2015 The Kubernetes Authors.",
	})
	want := []string{"2009 The Go Authors", "2014-2016 The Kubernetes Authors.", "2015-2017 go-swagger maintainers"}
	if !slices.Equal(got, want) {
		t.Errorf("notices %q, want %q", got, want)
	}
}

const md = `# Changelog

Text before the first section is not part of any entry.

## [Unreleased]

### Added
- A thing, described at some length so that the line has to be wrapped to fit
  the Debian changelog's width.

## [0.1.0] - 2026-05-01

- First release.
`

func TestChangelog(t *testing.T) {
	var b strings.Builder
	if err := changelog(&b, []byte(md), "0.2.0", "2026-11-27"); err != nil {
		t.Fatal(err)
	}
	want := `pve-autoscaler (0.2.0) unstable; urgency=medium

  [Added]
  * A thing, described at some length so that the line has to be wrapped to
    fit the Debian changelog's width.

 -- ` + maintainer + `  Fri, 27 Nov 2026 00:00:00 +0000

pve-autoscaler (0.1.0) unstable; urgency=medium

  * First release.

 -- ` + maintainer + `  Fri, 01 May 2026 00:00:00 +0000
`
	if b.String() != want {
		t.Errorf("changelog:\n%s\nwant:\n%s", b.String(), want)
	}
	// Packaging the release itself: its own section comes first.
	b.Reset()
	if err := changelog(&b, []byte(md), "0.1.0", "2026-11-27"); err != nil || !strings.HasPrefix(b.String(), "pve-autoscaler (0.1.0) unstable") || strings.Count(b.String(), " -- ") != 1 {
		t.Errorf("release changelog: %v\n%s", err, b.String())
	}
	for _, bad := range []string{"## [Unreleased]\nnot a bullet\n", "## [1.0] no date\n- x\n", "## [0.0.1] - 2026-01-01\n- x\n"} {
		if err := changelog(&b, []byte(bad), "0.2.0", "2026-11-27"); err == nil {
			t.Errorf("changelog of %q: no error", bad)
		}
	}
	// The project's own CHANGELOG.md renders.
	own, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	if err := changelog(&b, own, "1.2.3", "2026-11-27"); err != nil {
		t.Errorf("CHANGELOG.md: %v", err)
	}
}

// The copyright file lists every module the binary links, with the MPL
// modules' source address, and nothing it does not recognise.
func TestCopyright(t *testing.T) {
	var b strings.Builder
	t.Setenv("CGO_ENABLED", "0")
	if err := copyright(&b, "../../cmd/pve-autoscaler"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}", "../../cmd/pve-autoscaler").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range strings.Fields(string(out)) {
		if !strings.Contains(b.String(), "\nFiles: vendor/"+m+"/*\n") {
			t.Errorf("module %s not listed", m)
		}
	}
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: *\nCopyright: The pve-autoscaler authors\nLicense: Apache-2.0\n",
		"\nFiles: vendor/github.com/siderolabs/talos/pkg/machinery/*\n",
		"Source Code Form: https://proxy.golang.org/github.com/siderolabs/talos/pkg/machinery/@v/v",
		"\nLicense: MPL-2.0\nComment:\n On Debian systems",
		"\nFiles: go/*\nCopyright: 2009 The Go Authors.\nLicense: BSD-3-Clause\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("copyright lacks %q", want)
		}
	}
}
