package readlimit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Exactly the limit is read whole.
	if data, err := ReadFile(file("at", 100), 100); err != nil || len(data) != 100 {
		t.Errorf("a file of exactly the limit: %d bytes, %v", len(data), err)
	}
	// One byte more is refused with its size.
	_, err := ReadFile(file("over", 101), 100)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Size != 101 || tl.Max != 100 || !strings.HasSuffix(err.Error(), "over: 101 bytes: expected at most 100 bytes") {
		t.Errorf("a file of the limit + 1: %v", err)
	}
	// A device without end: refused after max+1 bytes, its size unknown.
	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err := ReadFile("/dev/zero", 1<<20)
		if !errors.As(err, &tl) || tl.Size != -1 || tl.Held() != "more than 1048576 bytes" {
			t.Errorf("/dev/zero: %v", err)
		}
	}
	// Missing: os's error, with the path.
	if _, err := ReadFile(filepath.Join(dir, "missing"), 100); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}
