package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/server/store/pgtest"
)

// testEnv is a running server on 127.0.0.1 with a real SQLite store and a
// real repository directory.
type testEnv struct {
	t       *testing.T
	srv     *Server
	db      store.Store
	cfg     Config
	base    string // https://127.0.0.1:port
	caPool  *x509.CertPool
	cancel  context.CancelFunc
	done    chan error
	payload string // path of the payload under /repo/targets/
	sum     [32]byte
	clock   *testClock
	logs    *syncBuffer
}

type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// payloadSize is large enough that a download is still in flight when the
// server shuts down.
const payloadSize = 24 << 20

// makeRepo writes a repository directory like `airlock repo init` +
// `publish` leave it: public/metadata and public/targets with a
// consistent-snapshot payload, plus a secret file outside public and a
// symlink pointing at it.
func makeRepo(t *testing.T) (dir, payloadPath string, sum [32]byte) {
	t.Helper()
	dir = t.TempDir()
	meta := filepath.Join(dir, "public", "metadata")
	tdir := filepath.Join(dir, "public", "targets", "acme", "x1", "1.0.0")
	for _, d := range []string{meta, tdir, filepath.Join(meta, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"1.root.json":     `{"signed":{"_type":"root","version":1}}`,
		"root.json":       `{"signed":{"_type":"root","version":1}}`,
		"timestamp.json":  `{"signed":{"_type":"timestamp","version":7}}`,
		"3.snapshot.json": `{"signed":{"_type":"snapshot","version":3}}`,
		".hidden.json":    `{}`,
		"sub/x.json":      `{}`,
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(meta, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "airlock-repo.json"), []byte(`SECRET-CONFIG`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "airlock-repo.json"), filepath.Join(meta, "escape.json")); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, payloadSize)
	rand.Read(data)
	sum = sha256.Sum256(data)
	name := hex.EncodeToString(sum[:]) + ".fw.bin"
	if err := os.WriteFile(filepath.Join(tdir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, "acme/x1/1.0.0/" + name, sum
}

// openStore opens a SQLite store in dir.
func openTestStore(t *testing.T, dataDir string) store.Store {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(t.Context(), filepath.Join(dataDir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// startServer starts a server; mod may change the Config first (a store
// it sets, such as a PostgreSQL one, is the testEnv's db).
func startServer(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	repoDir, payload, sum := makeRepo(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	db := openTestStore(t, dataDir)
	t.Cleanup(func() { db.Close() })
	clock := &testClock{}
	logs := &syncBuffer{}
	cfg := Config{
		DataDir: dataDir, RepoDir: repoDir, DB: db, Listen: "127.0.0.1:0",
		PollInterval: 30 * time.Second, Now: clock.Now,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), ShutdownTimeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	e := &testEnv{t: t, db: cfg.DB, cfg: cfg, payload: payload, sum: sum, clock: clock, logs: logs}
	e.start()
	return e
}

// startReplica starts another server with e's configuration on the store
// handle db, as a replica behind a load balancer runs; mod may change its
// Config first. It shares e's clock and repository and logs to a buffer
// of its own.
func (e *testEnv) startReplica(db store.Store, mod func(*Config)) *testEnv {
	e.t.Helper()
	logs := &syncBuffer{}
	cfg := e.cfg
	cfg.DB = db
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mod != nil {
		mod(&cfg)
	}
	r := &testEnv{t: e.t, db: db, cfg: cfg, payload: e.payload, sum: e.sum, clock: e.clock, logs: logs}
	r.start()
	return r
}

func (e *testEnv) start() {
	t := e.t
	t.Helper()
	srv, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.base = "https://" + srv.Addr().String()
	e.caPool = x509.NewCertPool()
	if !e.caPool.AppendCertsFromPEM(srv.CAPEM()) {
		t.Fatal("no CA PEM")
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { e.stop() })
}

// stop cancels Serve and returns its result (nil if already stopped).
func (e *testEnv) stop() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		return err
	case <-time.After(30 * time.Second):
		e.t.Fatal("Serve did not return after cancel")
		return nil
	}
}

// client returns an HTTPS client that pins the server CA and presents cert
// (if non-nil).
func (e *testEnv) client(cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: e.caPool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}}
}

// do sends a request; body is marshalled as JSON unless it is []byte.
func (e *testEnv) do(c *http.Client, method, path, bearer string, body any) (*http.Response, []byte) {
	e.t.Helper()
	resp, data, err := e.tryDo(c, method, path, bearer, body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, data
}

func (e *testEnv) tryDo(c *http.Client, method, path, bearer string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	e.addTOTP(req, bearer) // auth_test.go: state-changing requests of e.adminToken users
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func (e *testEnv) adminToken(role string) string {
	e.t.Helper()
	tok, _, err := CreateAdminToken(e.t.Context(), e.db, "test-"+role, role, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	e.enrollTOTP(tok, "test-"+role)
	return tok
}

func (e *testEnv) enrollToken(o EnrollmentTokenOptions) string {
	e.t.Helper()
	tok, _, err := CreateEnrollmentToken(e.t.Context(), e.db, o, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// newCSR makes a device key and its PEM CSR.
func newCSR(t *testing.T, ed bool) (crypto.Signer, string) {
	t.Helper()
	var key crypto.Signer
	var err error
	if ed {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-chooses-nothing"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func enrollBody(token, csr string) deviceapi.EnrollRequest {
	return deviceapi.EnrollRequest{Token: token, CSR: csr, Model: "x1", HWRev: 2, Product: "acme/router-x1", Channel: "stable", CurrentVersion: "1.0.0"}
}

// enroll enrolls a device with a fresh token and returns its TLS identity.
func (e *testEnv) enroll() (tls.Certificate, deviceapi.EnrollResponse) {
	e.t.Helper()
	key, csr := newCSR(e.t, false)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/enroll", "", enrollBody(e.enrollToken(EnrollmentTokenOptions{}), csr))
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("enroll: %d %s", resp.StatusCode, data)
	}
	var er deviceapi.EnrollResponse
	if err := json.Unmarshal(data, &er); err != nil {
		e.t.Fatal(err)
	}
	return tlsCert(e.t, []byte(er.Certificate), key), er
}

func tlsCert(t *testing.T, certPEM []byte, key crypto.Signer) tls.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no certificate PEM")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key, Leaf: leaf}
}

// testCA is a throwaway CA (manufacturing CA or an attacker's CA).
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a client certificate with the given CN and serial.
func (ca *testCA) issue(t *testing.T, cn string, serial int64) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

func csrFor(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func tlsDialConf(e *testEnv, cert *tls.Certificate) (*tls.Conn, error) {
	conf := &tls.Config{RootCAs: e.caPool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	d := &tls.Dialer{Config: conf}
	c, err := d.DialContext(e.t.Context(), "tcp", e.srv.Addr().String())
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// postgresStores starts a PostgreSQL cluster with one new database (see
// postgresDSN) and returns a function that opens a store handle on it,
// with a connection pool of its own as every replica has, closed when the
// test ends.
func postgresStores(t *testing.T) func() store.Store {
	t.Helper()
	dsn := postgresDSN(t)
	return func() store.Store {
		t.Helper()
		db, err := store.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}

// postgresDSN starts a PostgreSQL cluster for the test (stopped when it
// ends) and returns the DSN of a new database in it. Without PostgreSQL
// the test is skipped, unless AIRLOCK_REQUIRE_TOOLS is set.
func postgresDSN(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	cluster, err := pgtest.Start(ctx)
	if errors.Is(err, pgtest.ErrNotInstalled) && os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "" {
		t.Skip("postgresql not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	dsn, err := cluster.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}
