package servercmd

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/servicetest"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
)

func TestSimUsageErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"sim", "--server", "https://127.0.0.1:1", "--ca", f, "--token-file", f, "--root", f, "--initial-bundle", f}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no server", []string{"sim", "--devices", "1"}, "--server is required"},
		{"no devices", base, "--devices must be"},
		{"fail rate above 1", append(append([]string{}, base...), "--devices", "1", "--fail-rate", "2"), "--fail-rate"},
		{"positional argument", append(append([]string{}, base...), "--devices", "1", "extra"), "unexpected arguments"},
		{"negative duration", append(append([]string{}, base...), "--devices", "1", "--duration", "-1s"), "--duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			if code != cli.ExitUsage || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want usage error mentioning %q", code, errOut, tt.want)
			}
		})
	}
	// Files that are not what they claim fail (exit 1), before any network.
	code, _, errOut := runCLI(t, append(append([]string{}, base...), "--devices", "1")...)
	if code != cli.ExitFailure || !strings.Contains(errOut, "airlock: error:") {
		t.Fatalf("bogus input files: exit %d, %q", code, errOut)
	}
}

// TestSimRunsAFleetAgainstTheServer runs `airlock sim` for a few seconds
// against the real server: every simulated device enrolls and installs the
// newest release; the summary line says so.
func TestSimRunsAFleetAgainstTheServer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gen := func() crypto.Signer {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, targets, snap, ts, prod := gen(), gen(), gen(), gen(), gen()
	r, err := repo.Init(filepath.Join(dir, "repo"), repo.InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootThreshold: 1,
		RootSigners: []crypto.Signer{root}, Targets: targets, Snapshot: snap, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate(demoProduct, []crypto.PublicKey{prod.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		img := filepath.Join(dir, v+".img")
		if err := os.WriteFile(img, bytes.Repeat([]byte(v), 500), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AddRelease(repo.ReleaseOptions{Product: demoProduct, ImagePath: img, Version: v, SecurityVersion: 1,
			Models: []string{"sim"}, Compress: repo.CompressNone, Signers: []crypto.Signer{prod}}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Publish(snap, ts); err != nil {
			t.Fatal(err)
		}
		if v == "1.0.0" {
			var b bytes.Buffer
			if err := r.CreateBundle(&b, demoProduct, v); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "initial.airlock"), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, filepath.Join(dataDir, server.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := server.New(server.Config{DataDir: dataDir, RepoDir: r.Dir(), DB: db, Listen: "127.0.0.1:0",
		PollInterval: time.Second, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	defer func() { cancel(); <-done }()
	tok, _, err := server.CreateEnrollmentToken(ctx, db, server.EnrollmentTokenOptions{Uses: 10}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.pem": srv.CAPEM(), "token": []byte(tok + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "sim", "--server", fmt.Sprintf("https://%s", srv.Addr()), "--ca", filepath.Join(dir, "ca.pem"),
		"--token-file", filepath.Join(dir, "token"), "--root", filepath.Join(r.PublicDir(), "metadata", "1.root.json"),
		"--initial-bundle", filepath.Join(dir, "initial.airlock"), "--devices", "5", "--duration", "4s",
		"--poll-interval", "1s", "--slot-size", "4KiB", "--report-every", "1s", "--verbose", "--log-level", "debug")
	if code != cli.ExitOK {
		t.Fatalf("airlock sim exited %d\n%s\n%s", code, out, errOut)
	}
	if recs := servicetest.JSONLines(t, errOut); len(recs) == 0 {
		t.Error("airlock sim --verbose logged nothing")
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"devices=5", "enrolled=5", "1.1.0=5"} {
		if !strings.Contains(last, want) {
			t.Errorf("final summary %q lacks %q", last, want)
		}
	}

	// --light: five more devices enroll through the same API and check in
	// (no rollout assigns them anything: they keep 1.0.0).
	code, out, errOut = runCLI(t, "sim", "--light", "--server", fmt.Sprintf("https://%s", srv.Addr()), "--ca", filepath.Join(dir, "ca.pem"),
		"--token-file", filepath.Join(dir, "token"), "--root", filepath.Join(r.PublicDir(), "metadata", "1.root.json"),
		"--initial-bundle", filepath.Join(dir, "initial.airlock"), "--devices", "5", "--duration", "3s",
		"--poll-interval", "1s", "--report-every", "1s")
	if code != cli.ExitOK {
		t.Fatalf("airlock sim --light exited %d\n%s\n%s", code, out, errOut)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	last = lines[len(lines)-1]
	for _, want := range []string{"devices=5", "enrolled=5", "errors=0", "1.0.0=5", "checkin(n="} {
		if !strings.Contains(last, want) {
			t.Errorf("--light: final summary %q lacks %q", last, want)
		}
	}
	if strings.Contains(last, "polls=0 ") {
		t.Errorf("--light: no check-in in %q", last)
	}
}
