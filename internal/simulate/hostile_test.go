package simulate

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
)

// hostileTraces are the traces of issue 20's "Hostile input" and their
// errors ("" when accepted); FuzzParseTrace's seeds too.
var hostileTraces = []struct{ name, in, want string }{
	{"bom", "\ufeff" + TraceHeader + "\n0,1,1,0\n60,1,1,0\n", ""},
	{"bom and crlf", "\ufeff" + TraceHeader + "\r\n0,1,1,0\r\n60,1,1,0\r\n", ""},
	{"bom in a row", TraceHeader + "\n\ufeff0,1,1,0\n60,1,1,0\n", `t.csv:2: time_s "\ufeff0": expected a number`},
	{"a long line", TraceHeader + "\n0,1,1,0\n60," + strings.Repeat("1", MaxTraceLine) + ",1,0\n", "t.csv:3: the line is longer than 1048576 bytes"},
	{"binary", "\x00\x01\x02", `t.csv:1: header "\x00\x01\x02"`},
	{"huge time", TraceHeader + "\n0,1,1,0\n1e300,1,1,0\n", "t.csv:3: time_s 1e+300: expected at most"},
	{"inf", TraceHeader + "\n0,Inf,1,0\n", `t.csv:2: cpu_cores "Inf": expected a number`},
}

func TestHostileTraces(t *testing.T) {
	for _, c := range hostileTraces {
		t.Run(c.name, func(t *testing.T) {
			tr, err := ParseTrace("t.csv", strings.NewReader(c.in))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == "" && len(tr.Samples) != 2:
				t.Fatalf("%d rows", len(tr.Samples))
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// rows streams a trace of n rows without holding it in memory.
type rows struct {
	n, i int
	buf  []byte
}

func (r *rows) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) && r.i <= r.n {
		if r.i == 0 {
			r.buf = append(r.buf, TraceHeader+"\n"...)
		} else {
			r.buf = fmt.Appendf(r.buf, "%d,1,1,0\n", r.i-1)
		}
		r.i++
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func TestTraceRowLimit(t *testing.T) {
	_, err := ParseTrace("t.csv", &rows{n: MaxTraceRows + 1})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("t.csv:%d: more than %d rows", MaxTraceRows+2, MaxTraceRows)) {
		t.Fatalf("one row too many: %v", err)
	}
	tr, err := ParseTrace("t.csv", &rows{n: MaxTraceRows})
	if err != nil || len(tr.Samples) != MaxTraceRows {
		t.Fatalf("the most rows: %d, %v", len(tr.Samples), err)
	}
}

// FuzzParseTrace: no input panics the parser, and an error names the
// file and a line ("t.csv:3: ..."), or says the whole file is empty or short.
func FuzzParseTrace(f *testing.F) {
	for _, c := range hostileTraces {
		if len(c.in) < 4096 {
			f.Add([]byte(c.in))
		}
	}
	f.Add([]byte(TraceHeader + "\n0,1,1,0\n60,2,3,4\n# comment\n120,0,0,0\n"))
	f.Add([]byte(TraceHeader + "\n0,1,1\n"))
	named := regexp.MustCompile(`^t\.csv(:\d+)?: `)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseTrace("t.csv", strings.NewReader(string(data)))
		if err != nil && !named.MatchString(err.Error()) {
			t.Fatalf("the error names no file and line: %v", err)
		}
	})
}
