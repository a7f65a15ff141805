package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
)

// TestDoctorExitCodes: 0 when nothing fails (JSON for scripts), 1 when a
// check fails, 2 for bad flags.
func TestDoctorExitCodes(t *testing.T) {
	env, w := newWorld(t)
	write := func(mod func(*config.Config)) string {
		c := w.Config()
		if mod != nil {
			mod(c)
		}
		return writeConfigFile(t, t.TempDir(), c)
	}
	env.Metrics.SetNode("doctor-cli", "1", "1Gi")
	if err := env.CreateNode(t.Context(), kubetest.NodeSpec{Name: "doctor-cli", CPU: "4", Memory: "8Gi"}); err != nil {
		t.Fatal(err)
	}
	// The control plane is shared by this package's tests: leave no worker behind.
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), "doctor-cli", metav1.DeleteOptions{})
		env.Metrics.Reset()
	})
	code, out, errs := runMain("doctor", "--config", write(nil), "--output", "json")
	var rep struct {
		Checks []struct{ Area, Check, Status string }
		OK     int `json:"ok"`
		Fail   int `json:"fail"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s%s", err, out, errs)
	}
	if code != exitOK || rep.Fail != 0 || rep.OK < 15 || len(rep.Checks) != rep.OK {
		t.Fatalf("clean: exit %d, %+v\n%s", code, rep, out)
	}
	code, out, _ = runMain("doctor", "--config", write(func(c *config.Config) { c.Proxmox.Template = config.VMRef{Name: "missing"} }))
	if code != exitFailure || !strings.Contains(out, "FAIL  template") || !strings.Contains(out, "fix: set proxmox.template") {
		t.Fatalf("missing template: exit %d\n%s", code, out)
	}
	if code, _, errs := runMain("doctor", "--output", "yaml"); code != exitUsage || !strings.Contains(errs, `--output "yaml"`) {
		t.Errorf("bad flag: exit %d %s", code, errs)
	}
}
