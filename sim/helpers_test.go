package sim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
)

const (
	testProduct = "acme/router-x1"
	testModel   = "x1"
	// testImageSize keeps 1,000 simulated devices small in memory.
	testImageSize = 2 << 10
	testSlotSize  = 8 << 10
)

// vendor is a real image repository (package repo) with throwaway keys.
type vendor struct {
	t                testing.TB
	rt               *repotest.Vendor
	r                *repo.Repo
	snap, ts, prod   crypto.Signer
	factoryRoot      []byte
	initialBundle    []byte
	initialVersion   string
	releasedVersions []string
}

// newVendor creates the repository with release 1.0.0 (the initial bundle).
func newVendor(t testing.TB, dir string) *vendor {
	t.Helper()
	rt := repotest.New(t, repotest.Options{Dir: dir, Product: testProduct, Model: testModel})
	v := &vendor{t: t, rt: rt, r: rt.Repo, snap: rt.Snapshot, ts: rt.Timestamp, prod: rt.ProductSigners[0], factoryRoot: rt.FactoryRoot}
	v.release("1.0.0")
	v.initialBundle, v.initialVersion = rt.Bundle("1.0.0"), "1.0.0"
	return v
}

// release adds and publishes a small release.
func (v *vendor) release(version string) {
	v.t.Helper()
	img := make([]byte, testImageSize)
	for i := range img {
		img[i] = byte(i*31 + len(v.releasedVersions)*7 + 1)
	}
	v.rt.Release(version, 1, img, nil)
	v.releasedVersions = append(v.releasedVersions, version)
}

// testServer is the real update server (package server, SQLite) on
// loopback with a 1 s poll interval.
type testServer struct {
	srv   *server.Server
	db    store.Store
	token string
	url   string
}

func startServer(t testing.TB, v *vendor, devices int, cfg func(*server.Config)) *testServer {
	t.Helper()
	ctx := context.Background()
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(dataDir, server.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := server.Config{DataDir: dataDir, RepoDir: v.r.Dir(), DB: db, Listen: "127.0.0.1:0",
		PollInterval: time.Second, Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 5 * time.Second}
	if cfg != nil {
		cfg(&c)
	}
	srv, err := server.New(c)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
	token, _, err := server.CreateEnrollmentToken(ctx, db, server.EnrollmentTokenOptions{Product: testProduct, Uses: devices}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{srv: srv, db: db, token: token, url: fmt.Sprintf("https://%s", srv.Addr())}
}

func (v *vendor) fleetOptions(s *testServer, devices int, failRate float64) Options {
	return Options{
		Server: s.url, ServerCA: s.srv.CAPEM(), Token: s.token, Devices: devices, FailRate: failRate, Seed: 7,
		Model: testModel, HWRev: 1, Product: testProduct, FactoryRoot: v.factoryRoot, InitialBundle: v.initialBundle,
		SlotSize: testSlotSize, PollInterval: time.Second,
	}
}

// runUntil runs the fleet until cond holds on its stats (checked every
// 100 ms) or the timeout passes; it returns the last stats.
func runUntil(t testing.TB, f *Fleet, timeout time.Duration, cond func(Stats) bool) (Stats, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ok := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			if s := f.Stats(); s.Devices == len(f.devices) && cond(s) {
				ok = true
				break loop
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	return f.Stats(), ok
}

// testCA returns a throwaway CA certificate (PEM) for option tests.
func testCA(t testing.TB) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
