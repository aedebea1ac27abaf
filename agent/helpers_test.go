package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/verify"
)

const (
	testProduct = "acme/router-x1"
	testModel   = "x1"
	// testImageSize is large enough for several reads and resumes.
	testImageSize = 600 << 10
	testSlotSize  = 1 << 20
)

// vendor is a real signed repository (package repo) with one product.
type vendor struct {
	t                         testing.TB
	rt                        *repotest.Vendor
	r                         *repo.Repo
	snapshot, tstamp, product crypto.Signer
	factoryRoot               []byte
}

func newVendor(t testing.TB) *vendor {
	t.Helper()
	rt := repotest.New(t, repotest.Options{Product: testProduct, Model: testModel})
	return &vendor{t: t, rt: rt, r: rt.Repo, snapshot: rt.Snapshot, tstamp: rt.Timestamp, product: rt.ProductSigners[0], factoryRoot: rt.FactoryRoot}
}

func (v *vendor) publish() { v.t.Helper(); v.rt.Publish() }

// testImage returns a deterministic pseudo-random image.
func testImage(seed uint64, n int) []byte { return repotest.Image(seed, n) }

// release adds and publishes a release of testImageSize bytes.
func (v *vendor) release(version string, sv uint32) []byte {
	v.t.Helper()
	img := testImage(uint64(len(version))*1000+uint64(version[len(version)-1]), testImageSize)
	v.rt.Release(version, sv, img, nil)
	return img
}

func (v *vendor) bundle(version string) []byte { v.t.Helper(); return v.rt.Bundle(version) }

// newDevice provisions a simulated device in a new directory with the
// vendor's release 1.0.0 committed in slot A and returns the path of its
// device.toml. The health check fails while DIR/fail-health exists.
func newDevice(t testing.TB, v *vendor, initial []byte) string {
	t.Helper()
	dir := t.TempDir()
	cfg := &device.Config{
		Dir: dir, Model: testModel, HWRev: 3, Product: testProduct, Root: "factory-root.json", StateDir: "state",
		WriteChunk: 64 << 10,
		Slots:      device.SlotsConfig{A: "slot-a.img", B: "slot-b.img", Size: testSlotSize},
		Boot:       device.BootConfig{Backend: boot.BackendSim, Path: "bootstate"},
		Health:     device.HealthConfig{Command: []string{"sh", "-c", "test ! -e fail-health"}, Timeout: 10 * time.Second},
	}
	src, err := verify.OpenBundle(bytes.NewReader(initial))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.Provision(context.Background(), durable.OS, cfg,
		device.ProvisionOptions{FactoryRoot: v.factoryRoot, CreateSlots: true, Initial: src, InitialTarget: src.TargetPath()},
		device.Options{}); err != nil {
		t.Fatal(err)
	}
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, device.ConfigFileName)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fingerprint is what a refused install must leave unchanged: boot
// control, the good slot's bytes, the counter and the trusted metadata.
func fingerprint(t testing.TB, devCfg string) string {
	t.Helper()
	d, err := device.OpenConfig(durable.OS, devCfg, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := readDevice(d)
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.Config()
	slot := cfg.Slots.A
	if v.boot.Good == boot.SlotB {
		slot = cfg.Slots.B
	}
	h := sha256.New()
	fmt.Fprintf(h, "%+v|%d|%s|", v.boot, v.policy.SecurityCounter, v.currentVersion())
	for _, p := range []string{cfg.Path(slot), filepath.Join(cfg.Path(cfg.StateDir), "trust", "timestamp.json")} {
		data, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// deviceVersion returns the running (committed) version and boot state.
func deviceVersion(t testing.TB, devCfg string) (string, boot.State) {
	t.Helper()
	d, err := device.OpenConfig(durable.OS, devCfg, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := readDevice(d)
	if err != nil {
		t.Fatal(err)
	}
	return v.currentVersion(), v.boot
}

// pki is a test CA with a server certificate for 127.0.0.1.
type pki struct {
	caCert  *x509.Certificate
	caKey   crypto.Signer
	caPEM   []byte
	server  tls.Certificate
	srvCert []byte // PEM
	srvKey  []byte // PEM
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{caCert: ca, caKey: caKey, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	sder, err := x509.CreateCertificate(rand.Reader, stmpl, ca, srvKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.server = tls.Certificate{Certificate: [][]byte{sder}, PrivateKey: srvKey}
	p.srvCert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sder})
	kder, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	p.srvKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return p
}

func (p *pki) fingerprint() string {
	sum := sha256.Sum256(p.caCert.Raw)
	return hex.EncodeToString(sum[:])
}

// writeCA writes the CA certificate to dir/server-ca.pem.
func (p *pki) writeCA(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(path, p.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startTLS serves h over TLS on addr ("127.0.0.1:0" for a free port),
// retrying briefly while a previous server's port is released.
func startTLS(t testing.TB, addr string, h http.Handler, cert tls.Certificate, clientCAs *x509.CertPool) *httptest.Server {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = l
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		s.TLS.ClientCAs = clientCAs
		s.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	}
	s.Config.ErrorLog = nil
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// fault decides how a target request is answered; it returns false to let
// the repository serve it normally.
type fault func(w http.ResponseWriter, r *http.Request, data []byte) bool

// repoHandler serves a repository's public directory and lets a test
// inject faults into target downloads. It counts the target bytes sent.
type repoHandler struct {
	dir    string
	files  http.Handler
	mu     sync.Mutex
	fault  fault
	ranges []string // Range header of each target request ("" for none)
	sent   atomic.Int64
}

func newRepoHandler(dir string) *repoHandler {
	return &repoHandler{dir: dir, files: http.FileServer(http.Dir(dir))}
}

func (h *repoHandler) setFault(f fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fault = f
}

func (h *repoHandler) targetRanges() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ranges...)
}

func (h *repoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/targets/") {
		h.files.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	f := h.fault
	h.ranges = append(h.ranges, r.Header.Get("Range"))
	h.mu.Unlock()
	cw := &countingWriter{ResponseWriter: w, n: &h.sent}
	if f != nil {
		name := filepath.Join(h.dir, filepath.FromSlash(r.URL.Path))
		data, err := os.ReadFile(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		// The validator a real file server sends, so that If-Range works.
		if fi, err := os.Stat(name); err == nil {
			w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
		}
		if f(cw, r, data) {
			return
		}
	}
	h.files.ServeHTTP(cw, r)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// firstRequestOnly applies f to requests without a Range header only.
func firstRequestOnly(f fault) fault {
	return func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		if r.Header.Get("Range") != "" {
			return false
		}
		return f(w, r, data)
	}
}

// cutAfter sends the first k bytes of the body (with the full
// Content-Length) and drops the connection.
func cutAfter(k int) fault {
	return func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:k])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

// repoConfig writes an agent config in repository-only mode.
func repoConfig(t testing.TB, devCfg, baseURL, caPath string, stall string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.toml")
	// These tests are about whole downloads: delta installs have their own.
	text := fmt.Sprintf("device_config = %q\nserver_ca = %q\nmetadata_url = %q\ntargets_url = %q\nprogress = \"none\"\nstall_timeout = %q\nfull_download = true\n",
		devCfg, caPath, baseURL+"/metadata", baseURL+"/targets", stall)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newTestAgent loads the config at path with fast test backoffs.
func newTestAgent(t testing.TB, path string) *Agent {
	t.Helper()
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{ResumeBackoff: 20 * time.Millisecond, InitialBackoff: 10 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}
