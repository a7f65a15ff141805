package pvesim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	goprox "github.com/luthermonson/go-proxmox"
)

// An independent client, go-proxmox, reads /cluster/status through
// Client.Cluster (which it calls first, as other PVE clients do); a token
// without Sys.Audit on "/" gets PVE's 403, which go-proxmox tolerates. A
// token the world leaves without a secret gets a UUID, as PVE generates.
func TestGoProxmoxClusterStatusAndUUIDSecret(t *testing.T) {
	w := DefaultWorld("")
	w.Latencies = FastLatencies()
	poolScoped("9.0.3")(&w)
	w.Tokens[len(w.Tokens)-1].Secret = "" // the pool-scoped token: generated
	sim, err := New(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"autoscaler@pve!scaler", poolToken} {
		if s := sim.TokenSecret(id); !uuidRE.MatchString(s) {
			t.Errorf("token %s secret %q is not a UUID", id, s)
		}
	}
	srv, err := sim.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CertPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 5 * time.Second}
	client := func(id string) *goprox.Client {
		return goprox.NewClient(srv.URL, goprox.WithHTTPClient(hc), goprox.WithAPIToken(id, sim.TokenSecret(id)))
	}
	ctx := context.Background()

	sim.SetHostOnline("pve3", false)
	cl, err := client("autoscaler@pve!scaler").Cluster(ctx)
	if err != nil {
		t.Fatalf("Cluster: %v", err)
	}
	if cl.Name != "pvesim" || cl.ID != "cluster" || cl.Quorate != 1 || cl.Version < 1 || len(cl.Nodes) != 3 {
		t.Fatalf("cluster %+v", cl)
	}
	for i, n := range cl.Nodes {
		wantStatus := "online"
		if n.Name == "pve3" {
			wantStatus = "offline"
		}
		if n.Name != []string{"pve1", "pve2", "pve3"}[i] || n.ID != "node/"+n.Name || n.Status != wantStatus || n.IP == "" {
			t.Errorf("node %d: %+v", i, n)
		}
	}
	if cl.Nodes[0].Local != 1 || cl.Nodes[1].Local != 0 {
		t.Errorf("local flags %d %d", cl.Nodes[0].Local, cl.Nodes[1].Local)
	}
	// Pool-scoped: no Sys.Audit on "/": 403, which go-proxmox's Cluster passes over.
	pc := client(poolToken)
	if err := pc.Get(ctx, "/cluster/status", &[]map[string]any{}); !goprox.IsNotAuthorized(err) {
		t.Errorf("/cluster/status without Sys.Audit on /: %v", err)
	}
	if cl, err := pc.Cluster(ctx); err != nil || len(cl.Nodes) != 0 {
		t.Errorf("Cluster with a pool-scoped token: %+v %v", cl, err)
	}
	// The pool-scoped token still reads what it needs, through go-proxmox.
	vm, err := pc.Node(ctx, "pve1")
	if err != nil {
		t.Fatalf("Node: %v", err)
	}
	if tmpl, err := vm.VirtualMachine(ctx, 9000); err != nil || tmpl.Name != "talos-worker-template" {
		t.Errorf("template through the pool: %v %v", tmpl, err)
	}
	if _, err := client("autoscaler@pve!nope").Version(ctx); err == nil {
		t.Error("an unknown token was accepted")
	}
}
