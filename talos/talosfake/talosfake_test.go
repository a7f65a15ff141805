package talosfake

import (
	"context"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// TestApplyAfterCloseIsRefused: an apply that reaches a node closed while
// it was on its way (the VM stopped) is refused, not a crash.
func TestApplyAfterCloseIsRefused(t *testing.T) {
	n, err := Start(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	_, err = (&service{n: n}).ApplyConfiguration(context.Background(), &machine.ApplyConfigurationRequest{Data: []byte("version: v1alpha1\nmachine:\n  type: worker\n")})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("apply after close: %v, want Unavailable", err)
	}
}
