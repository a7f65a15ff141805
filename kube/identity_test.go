package kube

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/kube/kubetest"
	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// TestNodeOf reads the Node of a machine from the API server by identity,
// and fails closed: an unknown UUID, or a Node that shares the machine's
// name or UUID without being its, is an error, never "no Node".
func TestNodeOf(t *testing.T) {
	env := kubetest.Require(t)
	ctx := context.Background()
	const uuid = "4c4c4544-0042-4a10-8051-b7c04f565a31"
	if err := env.CreateNode(ctx, kubetest.NodeSpec{Name: "ident-a", CPU: "4", Memory: "8Gi", SystemUUID: uuid,
		Labels: map[string]string{scaler.LabelManaged: "true", scaler.LabelVMID: "7701"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), "ident-a", metav1.DeleteOptions{})
	})
	waitReady(t, env, "ident-a")
	c := adapter(t, env, config.Drain{})

	n, err := c.NodeOf(ctx, scaler.Machine{VMID: 7701, Name: "renamed-in-pve", UUID: strings.ToUpper(uuid)})
	if err != nil || n == nil || n.Name != "ident-a" || !n.Ready {
		t.Fatalf("by identity: %+v, %v", n, err)
	}
	if n, err := c.NodeOf(ctx, scaler.Machine{VMID: 7702, Name: "ident-b", UUID: "4c4c4544-0000-0000-0000-000000000000"}); err != nil || n != nil {
		t.Errorf("a machine with no Node: %+v, %v", n, err)
	}
	if _, err := c.NodeOf(ctx, scaler.Machine{VMID: 7701, Name: "ident-a"}); err == nil {
		t.Error("an unknown UUID answered")
	}
	// Another machine under the same name and vmid: ambiguous.
	if n, err := c.NodeOf(ctx, scaler.Machine{VMID: 7701, Name: "ident-a", UUID: "4c4c4544-0000-0000-0000-000000000001"}); err == nil {
		t.Errorf("a Node with the name but another UUID was taken for none: %+v", n)
	}
	// The vmid label removed by hand: the Node still shows the UUID.
	patch := []byte(`{"metadata":{"labels":{"` + scaler.LabelVMID + `":null}}}`)
	if _, err := env.Client.CoreV1().Nodes().Patch(ctx, "ident-a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.NodeOf(ctx, scaler.Machine{VMID: 7701, Name: "w-7701", UUID: uuid}); err == nil {
		t.Errorf("a Node with the machine's UUID but no vmid label was taken for none: %+v", n)
	}
}
