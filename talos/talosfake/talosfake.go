// Package talosfake is a fake Talos API (apid) for tests and the simulated
// world: a gRPC server implementing machinery's own generated MachineService
// interface, so the real machinery client talks real gRPC over real TLS.
//
// A Node starts in maintenance mode (self-signed certificate, no client
// authentication, only ApplyConfiguration). An applied config makes it
// "install and reboot": the server goes away for InstallDelay, then comes
// back at the same address in secure mode (a certificate issued by the
// cluster's OS CA for the node's IP, client certificates verified against
// the CA in the applied config). A reset halts it.
//
// In both modes it also serves the COSI state service (cosi.resource.State,
// which the machinery client's COSI field and safe.StateGet talk to) with
// one resource: SystemInformation (hardware.talos.dev, id
// systeminformation), whose UUID is the machine's SMBIOS UUID, as a real
// Talos serves it in maintenance mode too. Other resources are NotFound.
package talosfake

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	stdx509 "crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/siderolabs/crypto/x509"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
)

// State is where a fake node is in its life.
type State string

const (
	Maintenance State = "maintenance" // waiting for a config
	Installing  State = "installing"  // config received; rebooting (no API)
	Running     State = "running"     // secure mode
	Halted      State = "halted"      // reset done, powered off (no API)
	Down        State = "down"        // not answering (fault, or closed)
)

// Options configures a fake node.
type Options struct {
	// Addr is where to listen: "127.0.0.7:0" takes a free port, which the
	// node keeps across its reboot.
	Addr string
	// CA issues the certificate served in secure mode: the cluster's OS CA
	// (cert and key), whose certificate the talosconfig trusts.
	CA *x509.PEMEncodedCertificateAndKey
	// InstallDelay is how long install and reboot take.
	InstallDelay time.Duration
	// Version is the Talos version reported in secure mode (default v1.13.9).
	Version string
	// OnInstalled is called when the node is back in secure mode, with the applied config.
	OnInstalled func(n *Node, config []byte)
	// OnReset is called when a reset is accepted.
	OnReset func(n *Node, req *machine.ResetRequest)
	// UUID is the machine's SMBIOS UUID, served as SystemInformation's
	// uuid (default: a random version 4 UUID).
	UUID string
}

// Node is one fake Talos machine.
type Node struct {
	opts Options
	ip   string
	port string

	mu        sync.Mutex
	state     State
	srv       *grpc.Server
	applied   [][]byte
	resets    []*machine.ResetRequest
	nodeMD    []string
	reject    string
	neverUp   bool
	hangReset bool
	wrongCA   bool
	uuid      string // reported SMBIOS UUID (the configured one, or a fault's)
	idReads   int
	closed    bool
	timer     *time.Timer
	wg        sync.WaitGroup
}

// Start starts a node in maintenance mode.
func Start(opts Options) (*Node, error) {
	opts = defaults(opts)
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("talosfake: address %q: %w", opts.Addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("talosfake: address %q: only loopback addresses are allowed", opts.Addr)
	}
	n := &Node{opts: opts, ip: host, uuid: opts.UUID}
	lis, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("talosfake: %w", err)
	}
	_, n.port, _ = net.SplitHostPort(lis.Addr().String())
	cert, err := selfSigned(host)
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state = Maintenance
	n.serve(lis, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.NoClientCert, MinVersion: tls.VersionTLS12}, false)
	return n, nil
}

func defaults(opts Options) Options {
	if opts.Version == "" {
		opts.Version = "v1.13.9"
	}
	if opts.UUID == "" {
		opts.UUID = newUUID()
	}
	return opts
}

// newUUID is a random RFC 4122 version 4 UUID, lower case.
func newUUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// UUID is the machine's configured SMBIOS UUID (what it reports unless
// ReportUUID says otherwise).
func (n *Node) UUID() string { return n.opts.UUID }

// ReportUUID makes SystemInformation report uuid instead of the configured
// UUID (a fault: another machine answers at this address); "" goes back
// to the configured one.
func (n *Node) ReportUUID(uuid string) {
	if uuid == "" {
		uuid = n.opts.UUID
	}
	n.mu.Lock()
	n.uuid = uuid
	n.mu.Unlock()
}

// IdentityReads is how many times SystemInformation was read.
func (n *Node) IdentityReads() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.idReads
}

// IP is the node's address; Port its API port; Addr both.
func (n *Node) IP() string   { return n.ip }
func (n *Node) Port() string { return n.port }
func (n *Node) Addr() string { return net.JoinHostPort(n.ip, n.port) }

// State returns where the node is.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Applied returns the configs received, in order.
func (n *Node) Applied() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]byte(nil), n.applied...)
}

// Resets returns the reset requests received.
func (n *Node) Resets() []*machine.ResetRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*machine.ResetRequest(nil), n.resets...)
}

// NodeMetadata returns the "node" gRPC metadata of secure-mode requests.
func (n *Node) NodeMetadata() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.nodeMD...)
}

// RejectApply makes every ApplyConfiguration fail with msg (InvalidArgument), as Talos does for a bad config.
func (n *Node) RejectApply(msg string) { n.mu.Lock(); n.reject = msg; n.mu.Unlock() }

// NeverUp keeps the node down after its install: it never comes back.
func (n *Node) NeverUp() { n.mu.Lock(); n.neverUp = true; n.mu.Unlock() }

// HangReset makes Reset block until the caller gives up.
func (n *Node) HangReset() { n.mu.Lock(); n.hangReset = true; n.mu.Unlock() }

// WrongCA makes secure mode serve a certificate from a foreign CA.
func (n *Node) WrongCA() { n.mu.Lock(); n.wrongCA = true; n.mu.Unlock() }

// GoDown stops the API now (a VM that powered off or never booted).
func (n *Node) GoDown() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.state = Down
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Close stops the node and waits for its goroutines.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	srv := n.srv
	n.srv = nil
	if n.timer != nil {
		n.timer.Stop()
	}
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	n.wg.Wait()
}

// serve starts a server on lis; n.mu must be held.
func (n *Node) serve(lis net.Listener, cfg *tls.Config, secure bool) {
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	svc := &service{n: n, secure: secure}
	machine.RegisterMachineServiceServer(srv, svc)
	cosiv1alpha1.RegisterStateServer(srv, &stateService{svc: svc})
	n.srv = srv
	n.wg.Go(func() { _ = srv.Serve(lis) })
}

// install runs after an accepted apply: the maintenance server stops, the
// node "reboots", then serves in secure mode.
func (n *Node) install(old *grpc.Server, cfg []byte) {
	old.GracefulStop()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.timer = time.AfterFunc(n.opts.InstallDelay, func() {
		if err := n.boot(cfg); err != nil {
			n.mu.Lock()
			n.state = Down
			n.mu.Unlock()
		}
	})
}

func (n *Node) boot(cfg []byte) error {
	n.mu.Lock()
	if n.closed || n.neverUp {
		n.state = Down
		n.mu.Unlock()
		return nil
	}
	tlsCfg, err := n.secureTLS(cfg)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	lis, err := net.Listen("tcp", n.Addr())
	if err != nil {
		n.mu.Unlock()
		return err
	}
	n.serve(lis, tlsCfg, true)
	cb := n.opts.OnInstalled
	n.mu.Unlock()
	// The callback runs before the node reports Running, so whoever waits
	// for Running sees what the callback did (a Node registered, say).
	if cb != nil {
		cb(n, cfg)
	}
	n.mu.Lock()
	if n.state == Installing {
		n.state = Running
	}
	n.mu.Unlock()
	return nil
}

// secureTLS serves a certificate issued by the OS CA for the node's IP and
// verifies clients against the CA the applied config trusts.
func (n *Node) secureTLS(cfg []byte) (*tls.Config, error) {
	issuer := n.opts.CA
	if n.wrongCA || issuer == nil {
		ca, err := x509.NewSelfSignedCertificateAuthority(x509.ECDSA(true))
		if err != nil {
			return nil, err
		}
		issuer = &x509.PEMEncodedCertificateAndKey{Crt: ca.CrtPEM, Key: ca.KeyPEM}
	}
	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(issuer)
	if err != nil {
		return nil, fmt.Errorf("talosfake: CA: %w", err)
	}
	kp, err := x509.NewKeyPair(ca, x509.IPAddresses([]net.IP{net.ParseIP(n.ip)}), x509.CommonName(n.ip),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}))
	if err != nil {
		return nil, fmt.Errorf("talosfake: server certificate: %w", err)
	}
	clientCAs := stdx509.NewCertPool()
	if c, err := configloader.NewFromBytes(cfg); err == nil && c.Machine() != nil && c.Machine().Security().IssuingCA() != nil {
		clientCAs.AppendCertsFromPEM(c.Machine().Security().IssuingCA().Crt)
	} else if n.opts.CA != nil {
		clientCAs.AppendCertsFromPEM(n.opts.CA.Crt)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*kp.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

type service struct {
	machine.UnimplementedMachineServiceServer
	n      *Node
	secure bool
}

func notInMaintenance(method string) error {
	return status.Errorf(codes.Unimplemented, "API %s is not implemented in maintenance mode", method)
}

// poweredOff answers like a machine that is gone: the connection drops.
func (s *service) poweredOff() error {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	if s.n.state == Halted || s.n.state == Down {
		return status.Error(codes.Unavailable, "connection closed: the machine is powered off")
	}
	return nil
}

func (s *service) recordNode(ctx context.Context) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		s.n.mu.Lock()
		s.n.nodeMD = append(s.n.nodeMD, md.Get("node")...)
		s.n.mu.Unlock()
	}
}

func (s *service) ApplyConfiguration(ctx context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.reject != "" {
		return nil, status.Error(codes.InvalidArgument, n.reject)
	}
	cfg, err := configloader.NewFromBytes(req.GetData())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to parse config: %v", err)
	}
	if cfg.Machine() == nil {
		return nil, status.Error(codes.InvalidArgument, "machine config is missing the machine section")
	}
	n.applied = append(n.applied, append([]byte(nil), req.GetData()...))
	if s.secure {
		if md, ok := metadata.FromIncomingContext(ctx); ok { // n.mu is held: not recordNode
			n.nodeMD = append(n.nodeMD, md.Get("node")...)
		}
		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
			Mode: machine.ApplyConfigurationRequest_NO_REBOOT, ModeDetails: "Applied configuration without a reboot",
		}}}, nil
	}
	if n.closed || n.srv == nil {
		// Closed (the VM stopped) while this request was on its way.
		return nil, status.Error(codes.Unavailable, "connection closed: the machine is going down")
	}
	n.state = Installing
	old := n.srv
	n.srv = nil
	data := append([]byte(nil), req.GetData()...)
	n.wg.Go(func() { n.install(old, data) })
	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode: machine.ApplyConfigurationRequest_REBOOT, ModeDetails: "Applied configuration with a reboot: installing Talos",
	}}}, nil
}

func (s *service) Version(ctx context.Context, _ *emptypb.Empty) (*machine.VersionResponse, error) {
	if !s.secure {
		return nil, notInMaintenance("Version")
	}
	if err := s.poweredOff(); err != nil {
		return nil, err
	}
	s.recordNode(ctx)
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version:  &machine.VersionInfo{Tag: s.n.opts.Version, Arch: "amd64", GoVersion: "go1.26"},
		Platform: &machine.PlatformInfo{Name: "metal", Mode: "metal"},
	}}}, nil
}

func (s *service) Reset(ctx context.Context, req *machine.ResetRequest) (*machine.ResetResponse, error) {
	if !s.secure {
		return nil, notInMaintenance("Reset")
	}
	if err := s.poweredOff(); err != nil {
		return nil, err
	}
	s.recordNode(ctx)
	n := s.n
	n.mu.Lock()
	hang := n.hangReset
	n.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	n.mu.Lock()
	n.resets = append(n.resets, req)
	n.state = Halted
	old := n.srv
	n.srv = nil
	cb := n.opts.OnReset
	n.mu.Unlock()
	if cb != nil {
		cb(n, req)
	}
	if old != nil && !req.GetReboot() {
		n.wg.Go(func() { old.GracefulStop() })
	}
	return &machine.ResetResponse{Messages: []*machine.Reset{{ActorId: "reset"}}}, nil
}

// stateService is the COSI state API (read-only, one resource).
type stateService struct {
	cosiv1alpha1.UnimplementedStateServer
	svc *service
}

// Get serves SystemInformation, the machine's SMBIOS identity; any other
// resource is NotFound, as COSI answers.
func (s *stateService) Get(ctx context.Context, req *cosiv1alpha1.GetRequest) (*cosiv1alpha1.GetResponse, error) {
	if err := s.svc.poweredOff(); err != nil {
		return nil, err
	}
	if s.svc.secure {
		s.svc.recordNode(ctx)
	}
	if req.GetNamespace() != hardware.NamespaceName || req.GetType() != hardware.SystemInformationType || req.GetId() != hardware.SystemInformationID {
		return nil, status.Errorf(codes.NotFound, "resource %s(%s/%s@undefined) doesn't exist", req.GetType(), req.GetNamespace(), req.GetId())
	}
	n := s.svc.n
	n.mu.Lock()
	n.idReads++
	id := n.uuid
	n.mu.Unlock()
	r := hardware.NewSystemInformation(hardware.SystemInformationID)
	*r.TypedSpec() = hardware.SystemInformationSpec{
		Manufacturer: "QEMU", ProductName: "Standard PC (i440FX + PIIX, 1996)", Version: "pc-i440fx-9.2",
		UUID: id, WakeUpType: "Power Switch",
	}
	pr, err := protobuf.FromResource(r)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "marshal SystemInformation: %v", err)
	}
	m, err := pr.Marshal()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "marshal SystemInformation: %v", err)
	}
	return &cosiv1alpha1.GetResponse{Resource: m}, nil
}

// selfSigned makes the maintenance-mode certificate, as a fresh Talos does.
func selfSigned(ip string) (tls.Certificate, error) {
	ca, err := x509.NewSelfSignedCertificateAuthority(x509.ECDSA(true), x509.IPAddresses([]net.IP{net.ParseIP(ip)}))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("talosfake: self-signed certificate: %w", err)
	}
	return tls.X509KeyPair(ca.CrtPEM, ca.KeyPEM)
}

// StartInstalled starts a machine installed with cfg before (a start after
// a stop, a reboot): it skips maintenance mode and comes up in secure mode
// at opts.Addr (which must name the port), calling OnInstalled once it
// serves, from its own goroutine.
func StartInstalled(opts Options, cfg []byte) (*Node, error) {
	opts = defaults(opts)
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil || port == "0" {
		return nil, fmt.Errorf("talosfake: address %q: expected IP:PORT with the port it was installed at", opts.Addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("talosfake: address %q: only loopback addresses are allowed", opts.Addr)
	}
	n := &Node{opts: opts, ip: host, port: port, state: Installing, uuid: opts.UUID}
	n.timer = time.AfterFunc(0, func() {
		if err := n.boot(cfg); err != nil {
			n.mu.Lock()
			n.state = Down
			n.mu.Unlock()
		}
	})
	return n, nil
}
