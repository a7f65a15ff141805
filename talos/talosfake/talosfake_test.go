package talosfake

import (
	"strings"
	"testing"
)

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.0.0.5:50000", "nonsense"} {
		if n, err := Start(Options{Addr: addr}); err == nil {
			n.Close()
			t.Errorf("%s accepted", addr)
		}
	}
	n, err := Start(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.State() != Maintenance || n.IP() != "127.0.0.1" || n.Port() == "0" || !strings.HasPrefix(n.Addr(), "127.0.0.1:") {
		t.Errorf("node %s state %s", n.Addr(), n.State())
	}
	n.GoDown()
	if n.State() != Down {
		t.Errorf("state %s after GoDown", n.State())
	}
}
