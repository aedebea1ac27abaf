package agent_test

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/verify"
)

// TestAgentWithRealServer runs the agent against the real update server
// (package server, SQLite store, its own CA pinned by fingerprint): enroll
// with a token, check in, update 1.0.0 -> 1.1.0 and commit, then a release
// whose health check fails is rolled back; the server's event log holds
// every report. The agent binary does not import package server: only this
// external test does.
func TestAgentWithRealServer(t *testing.T) {
	ctx := context.Background()
	sign := func() crypto.Signer {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, targets, snap, ts, prod := sign(), sign(), sign(), sign(), sign()
	repoDir := filepath.Join(t.TempDir(), "repo")
	r, err := repo.Init(repoDir, repo.InitOptions{
		RootKeys: []crypto.PublicKey{root.Public()}, RootThreshold: 1, RootSigners: []crypto.Signer{root},
		Targets: targets, Snapshot: snap, Timestamp: ts,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{prod.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	release := func(version string, sv uint32) {
		t.Helper()
		img := filepath.Join(t.TempDir(), "fw.img")
		data := make([]byte, 300<<10)
		for i := range data {
			data[i] = byte(i*7 + len(version) + int(version[2]))
		}
		if err := os.WriteFile(img, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AddRelease(repo.ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: version,
			SecurityVersion: sv, Models: []string{"x1"}, Compress: repo.CompressZstd, Signers: []crypto.Signer{prod}}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Publish(snap, ts); err != nil {
			t.Fatal(err)
		}
	}
	release("1.0.0", 1)
	var bundle strings.Builder
	if err := r.CreateBundle(&bundle, "acme/router-x1", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	release("1.1.0", 1)
	factoryRoot, err := os.ReadFile(filepath.Join(r.PublicDir(), "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}

	// The device.
	devDir := t.TempDir()
	dcfg := &device.Config{
		Dir: devDir, Model: "x1", HWRev: 1, Product: "acme/router-x1", Root: "root.json", StateDir: "state",
		Slots:  device.SlotsConfig{A: "a.img", B: "b.img", Size: 1 << 20},
		Boot:   device.BootConfig{Backend: boot.BackendSim, Path: "bootstate"},
		Health: device.HealthConfig{Command: []string{"sh", "-c", "test ! -e fail-health"}, Timeout: 10 * time.Second},
	}
	src, err := verify.OpenBundle(strings.NewReader(bundle.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.Provision(ctx, durable.OS, dcfg, device.ProvisionOptions{FactoryRoot: factoryRoot, CreateSlots: true,
		Initial: src, InitialTarget: src.TargetPath()}, device.Options{}); err != nil {
		t.Fatal(err)
	}
	data, err := dcfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	devCfg := filepath.Join(devDir, "device.toml")
	if err := os.WriteFile(devCfg, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// The server.
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(dataDir, server.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv, err := server.New(server.Config{DataDir: dataDir, RepoDir: repoDir, DB: db, Listen: "127.0.0.1:0",
		PollInterval: 30 * time.Second, Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
	token, _, err := server.CreateEnrollmentToken(ctx, db, server.EnrollmentTokenOptions{Product: "acme/router-x1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// The agent, pinning the server CA by the fingerprint it prints.
	adir := t.TempDir()
	for name, data := range map[string][]byte{"server-ca.pem": srv.CAPEM(), "token": []byte(token + "\n")} {
		if err := os.WriteFile(filepath.Join(adir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`device_config = %q
server = "https://%s"
server_ca = "server-ca.pem"
server_ca_sha256 = %q
enrollment_token_file = "token"
identity_dir = "identity"
progress = "none"
`, devCfg, srv.Addr(), srv.CAFingerprint())
	if err := os.WriteFile(filepath.Join(adir, "agent.toml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(filepath.Join(adir, "agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.RunOnce(ctx)
	if err != nil || res.Action != agent.ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("RunOnce = %+v, %v; want committed 1.1.0", res, err)
	}
	if a.PollInterval() != 30*time.Second {
		t.Errorf("poll interval = %v, want the server's 30s", a.PollInterval())
	}
	devs, err := db.ListDevices(ctx, store.DeviceFilter{})
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices = %v, %v", devs, err)
	}
	if devs[0].State != store.StateCommitted {
		t.Errorf("server sees %+v", devs[0])
	}

	// A release whose health check fails: rolled back and reported.
	release("1.2.0", 2)
	if err := os.WriteFile(filepath.Join(devDir, "fail-health"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = a.RunOnce(ctx)
	if err == nil || res.Action != agent.ActionRolledBack {
		t.Fatalf("RunOnce = %+v, %v; want rolled back", res, err)
	}
	devs, _ = db.ListDevices(ctx, store.DeviceFilter{})
	if devs[0].State != store.StateRolledBack {
		t.Errorf("server sees state %q, want rolled_back", devs[0].State)
	}
}
