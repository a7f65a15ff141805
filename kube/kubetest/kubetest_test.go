package kubetest

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

func TestMain(m *testing.M) { os.Exit(Main(m, Options{})) }

func TestControlPlane(t *testing.T) {
	e := Require(t)
	ctx := context.Background()
	if err := e.CreateNode(ctx, NodeSpec{Name: "kt-node-1", CPU: "4", Memory: "8Gi"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Client.CoreV1().Nodes().Delete(context.Background(), "kt-node-1", metav1.DeleteOptions{})
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := e.Client.CoreV1().Nodes().Get(ctx, "kt-node-1", metav1.GetOptions{})
		if err == nil && ready(n) {
			if n.Labels[corev1.LabelHostname] != "kt-node-1" || n.Labels[corev1.LabelOSStable] != "linux" {
				t.Errorf("node labels %v: a kubelet's hostname and os labels missing", n.Labels)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kwok node not Ready: %v %+v", err, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.Metrics.SetNode("kt-node-1", "1500m", "3Gi")
	mc, err := metricsclient.NewForConfig(e.Rest)
	if err != nil {
		t.Fatal(err)
	}
	nm, err := mc.MetricsV1beta1().NodeMetricses().Get(ctx, "kt-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("metrics through the aggregator: %v", err)
	}
	if nm.Usage.Cpu().MilliValue() != 1500 || nm.Usage.Memory().Value() != 3<<30 {
		t.Errorf("usage %v", nm.Usage)
	}
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
