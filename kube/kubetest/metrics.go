package kubetest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Metrics is a fake metrics.k8s.io server: node usage is whatever the
// test sets, served through the real apiserver's aggregation.
type Metrics struct {
	srv *httptest.Server

	mu    sync.Mutex
	nodes map[string]corev1.ResourceList
	stamp time.Time
	down  bool
}

func startMetrics() (*Metrics, error) {
	m := &Metrics{nodes: map[string]corev1.ResourceList{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(m.serve))
	_ = m.srv.Listener.Close()
	m.srv.Listener = lis
	m.srv.StartTLS()
	return m, nil
}

// Port is the server's port.
func (m *Metrics) Port() int { return m.srv.Listener.Addr().(*net.TCPAddr).Port }

// Close stops the server.
func (m *Metrics) Close() { m.srv.Close() }

// SetNode sets a node's usage ("1500m", "3Gi").
func (m *Metrics) SetNode(name, cpu, memory string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[name] = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)}
}

// Reset forgets every node's usage.
func (m *Metrics) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes = map[string]corev1.ResourceList{}
	m.stamp = time.Time{}
	m.down = false
}

// SetTimestamp makes every answer carry this timestamp (zero: now).
func (m *Metrics) SetTimestamp(t time.Time) { m.mu.Lock(); m.stamp = t; m.mu.Unlock() }

// SetDown makes the metrics API answer 503, as a crashed metrics-server would.
func (m *Metrics) SetDown(down bool) { m.mu.Lock(); m.down = down; m.mu.Unlock() }

func (m *Metrics) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	const gv = "metrics.k8s.io/v1beta1"
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/apis":
		_ = json.NewEncoder(w).Encode(metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
			Groups: []metav1.APIGroup{{Name: "metrics.k8s.io", Versions: []metav1.GroupVersionForDiscovery{{GroupVersion: gv, Version: "v1beta1"}},
				PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: "v1beta1"}}}})
	case path == "/apis/"+gv:
		_ = json.NewEncoder(w).Encode(metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv,
			APIResources: []metav1.APIResource{
				{Name: "nodes", Kind: "NodeMetrics", Verbs: metav1.Verbs{"get", "list"}},
				{Name: "pods", Namespaced: true, Kind: "PodMetrics", Verbs: metav1.Verbs{"get", "list"}},
			}})
	case m.down:
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"metrics-server is down","code":503}`, http.StatusServiceUnavailable)
	case path == "/apis/"+gv+"/nodes":
		list := metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: gv}}
		for name, u := range m.nodes {
			list.Items = append(list.Items, m.node(name, u))
		}
		_ = json.NewEncoder(w).Encode(list)
	case strings.HasPrefix(path, "/apis/"+gv+"/nodes/"):
		name := strings.TrimPrefix(path, "/apis/"+gv+"/nodes/")
		u, ok := m.nodes[name]
		if !ok {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(m.node(name, u))
	case strings.HasPrefix(path, "/apis/"+gv) && strings.HasSuffix(path, "/pods"):
		_ = json.NewEncoder(w).Encode(metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: gv}})
	default:
		http.NotFound(w, r)
	}
}

func (m *Metrics) node(name string, u corev1.ResourceList) metricsv1beta1.NodeMetrics {
	ts := m.stamp
	if ts.IsZero() {
		ts = time.Now()
	}
	return metricsv1beta1.NodeMetrics{TypeMeta: metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: "metrics.k8s.io/v1beta1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.Now()},
		Timestamp:  metav1.NewTime(ts), Window: metav1.Duration{Duration: 15 * time.Second}, Usage: u}
}
