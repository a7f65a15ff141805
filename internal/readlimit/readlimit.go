// Package readlimit reads a file whole only when it is no larger than a
// limit: past the limit it stops after one byte more and refuses, so a
// huge file, or a path such as /dev/zero, is never read whole. The config
// file and plan's snapshot are read through it.
package readlimit

import (
	"fmt"
	"io"
	"os"
)

// TooLargeError is a file holding more than Max bytes. Size is the file's
// size when it is a regular file, else -1 (a device or a pipe: only "more
// than Max" is known).
type TooLargeError struct {
	Path      string
	Max, Size int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: %s: expected at most %d bytes", e.Path, e.Held(), e.Max)
}

// Held says how much the file holds: "N bytes", or "more than Max bytes"
// when its size is unknown.
func (e *TooLargeError) Held() string {
	if e.Size < 0 {
		return fmt.Sprintf("more than %d bytes", e.Max)
	}
	return fmt.Sprintf("%d bytes", e.Size)
}

// ReadFile returns path's content when it holds at most max bytes, and a
// *TooLargeError, having read max+1 bytes, when it holds more. Other
// errors are os's (*fs.PathError), unwrapped by none.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		size := int64(-1)
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		return nil, &TooLargeError{Path: path, Max: max, Size: size}
	}
	return data, nil
}
