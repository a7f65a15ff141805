package pvesim

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Server is a running simulator endpoint.
type Server struct {
	Sim *Sim
	// URL is the API base, https://127.0.0.1:PORT/api2/json.
	URL string
	// Fingerprint is the SHA-256 fingerprint of the certificate, as PVE shows it (AB:CD:...).
	Fingerprint string
	// CertPEM is the self-signed certificate, to trust as a CA file.
	CertPEM []byte

	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// Serve starts the simulator on addr (a loopback address; port 0 picks one).
func (s *Sim) Serve(addr string) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pvesim: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("pvesim: listen address %q: only loopback addresses (127.0.0.0/8, ::1) are allowed", addr)
	}
	cert, certPEM, fp, err := selfSigned()
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pvesim: %w", err)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// HTTP/1.1 only: PVE's server speaks HTTP/1.1, and error answers
		// need a hijacked connection to carry their own reason phrase.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:     log.New(io.Discard, "", 0), // clients that refuse our certificate are expected in tests
	}
	out := &Server{Sim: s, Fingerprint: fp, CertPEM: certPEM, srv: srv, lis: lis, done: make(chan struct{})}
	out.URL = "https://" + lis.Addr().String() + "/api2/json"
	go func() {
		defer close(out.done)
		_ = srv.ServeTLS(lis, "", "")
	}()
	return out, nil
}

// Close stops the server and releases hanging requests.
func (sv *Server) Close() {
	sv.Sim.mu.Lock()
	if sv.Sim.faults.hang != nil {
		close(sv.Sim.faults.hang)
		sv.Sim.faults.hang = nil
	}
	sv.Sim.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = sv.srv.Shutdown(ctx)
	_ = sv.srv.Close()
	<-sv.done
}

func selfSigned() (tls.Certificate, []byte, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pvesim", Organization: []string{"PVE Cluster Node"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:    []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, "", err
	}
	sum := sha256.Sum256(der)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, strings.Join(hexes, ":"), nil
}

// withTotal is a list answer that carries PVE's "total" beside "data".
type withTotal struct {
	data  any
	total int
}

// apiError is an answer other than 200.
type apiError struct {
	code   int
	msg    string
	errors map[string]string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

func fail(code int, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

func paramErr(errs map[string]string) *apiError {
	return &apiError{code: 400, msg: "Parameter verification failed.", errors: errs}
}

// request is one parsed API call.
type request struct {
	method string
	parts  []string // path below /api2/json
	params map[string]string
	user   string // user@realm or user@realm!token
	token  *token
	ctx    context.Context
}

func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/api2/json")
	if !ok {
		writeAnswer(w, nil, fail(501, "Method '%s %s' not implemented", r.Method, r.URL.Path))
		return
	}
	req := &request{method: r.Method, parts: strings.FieldsFunc(path, func(c rune) bool { return c == '/' }), ctx: r.Context()}
	route := routeOf(r.Method, req.parts)

	s.mu.Lock()
	s.requests[r.Method+" "+route]++
	if r.Method != http.MethodGet {
		s.writes++
	}
	for _, f := range s.requestHooks {
		f(r.Method, route)
	}
	var injected *apiError
	var hang chan struct{}
	switch {
	case s.faults.hangRequests > 0:
		s.faults.hangRequests--
		if s.faults.hang == nil {
			s.faults.hang = make(chan struct{})
		}
		hang = s.faults.hang
	case s.faults.failRequests > 0:
		s.faults.failRequests--
		injected = fail(s.faults.failCode, "%s", s.faults.failMessage)
	}
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
		return
	}
	if injected != nil {
		writeAnswer(w, nil, injected)
		return
	}

	params, perr := parseParams(r)
	if perr != nil {
		writeAnswer(w, nil, perr)
		return
	}
	req.params = params
	if aerr := s.authenticate(r, req); aerr != nil {
		if aerr.code == 401 && s.lat.AuthFailure > 0 {
			select {
			case <-time.After(s.lat.AuthFailure):
			case <-r.Context().Done():
				return
			}
		}
		writeAnswer(w, nil, aerr)
		return
	}
	data, aerr := s.dispatch(req, route)
	s.mu.Lock()
	lose := s.faults.loseAnswer != "" && s.faults.loseAnswer == r.Method+" "+route
	if lose {
		s.faults.loseAnswer = ""
	}
	s.mu.Unlock()
	if lose {
		<-r.Context().Done()
		return
	}
	writeAnswer(w, data, aerr)
}

// routeOf names the route a path matches, with {node}, {vmid} and {upid}
// in place of values, for counting and dispatch.
func routeOf(method string, p []string) string {
	out := make([]string, len(p))
	copy(out, p)
	if len(out) >= 2 && out[0] == "nodes" {
		out[1] = "{node}"
		if len(out) >= 4 && out[2] == "qemu" {
			out[3] = "{vmid}"
		}
		if len(out) >= 4 && out[2] == "tasks" {
			out[3] = "{upid}"
		}
	}
	if len(out) == 4 && out[0] == "cluster" && out[1] == "mapping" && out[2] == "pci" {
		out[3] = "{id}"
	}
	return "/" + strings.Join(out, "/")
}

// parseParams reads query parameters, and the JSON or form body of POST and PUT.
func parseParams(r *http.Request) (map[string]string, *apiError) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		out[k] = v[0]
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return out, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, fail(400, "unable to read request body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return out, nil
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fail(400, "malformed JSON body")
		}
		for k, v := range m {
			switch t := v.(type) {
			case bool:
				if t {
					out[k] = "1"
				} else {
					out[k] = "0"
				}
			case float64:
				out[k] = strconv.FormatFloat(t, 'f', -1, 64)
			case string:
				out[k] = t
			case nil:
			default:
				b, _ := json.Marshal(t)
				out[k] = string(b)
			}
		}
		return out, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fail(400, "malformed form body")
	}
	for k, v := range form {
		out[k] = v[0]
	}
	return out, nil
}

// authenticate checks the API token or the ticket (and CSRF token on writes).
func (s *Sim) authenticate(r *http.Request, req *request) *apiError {
	if r.Method == http.MethodPost && len(req.parts) == 2 && req.parts[0] == "access" && req.parts[1] == "ticket" {
		return nil // logging in
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "PVEAPIToken") {
		v := strings.TrimPrefix(strings.TrimPrefix(h, "PVEAPIToken"), "=")
		v = strings.TrimSpace(strings.TrimPrefix(v, ":"))
		id, secret, ok := strings.Cut(v, "=")
		t := s.tokens[id]
		if !ok || t == nil || t.secret != secret {
			return fail(401, "authentication failure")
		}
		req.user, req.token = id, t
		return nil
	}
	c, err := r.Cookie("PVEAuthCookie")
	if err != nil {
		return fail(401, "No ticket")
	}
	user, ok := s.tickets[c.Value]
	if !ok {
		return fail(401, "authentication failure")
	}
	if r.Method != http.MethodGet && r.Header.Get("CSRFPreventionToken") != s.csrf[c.Value] {
		return fail(401, "Permission denied - invalid csrf token")
	}
	req.user = user
	return nil
}

// writeAnswer writes PVE's envelope; errors carry their text in the status
// line too, which net/http cannot do, so the connection is hijacked.
func writeAnswer(w http.ResponseWriter, data any, aerr *apiError) {
	if aerr == nil {
		env := map[string]any{"data": data}
		if wt, ok := data.(withTotal); ok {
			env = map[string]any{"data": wt.data, "total": wt.total}
		}
		body, _ := json.Marshal(env)
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(200)
		_, _ = w.Write(body)
		return
	}
	env := map[string]any{"data": nil, "message": aerr.msg + "\n"}
	if aerr.errors != nil {
		env["errors"] = aerr.errors
	}
	body, _ := json.Marshal(env)
	reason := strings.SplitN(aerr.msg, "\n", 2)[0]
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.WriteHeader(aerr.code)
		_, _ = w.Write(body)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	writeRaw(buf, aerr.code, reason, body)
}

func writeRaw(buf *bufio.ReadWriter, code int, reason string, body []byte) {
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", code, reason, len(body))
	_, _ = buf.Write(body)
	_ = buf.Flush()
}
