//go:build !airlock_device

package cli

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base32"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"
)

// TestRolloutCommandsAgainstARealServer drives 'airlock rollout' and
// 'airlock server director-root' against a running server.
func TestRolloutCommandsAgainstARealServer(t *testing.T) {
	ctx := context.Background()
	gen := func() crypto.Signer {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, targets, snap, ts, prod := gen(), gen(), gen(), gen(), gen()
	repoDir := filepath.Join(t.TempDir(), "repo")
	r, err := repo.Init(repoDir, repo.InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootThreshold: 1,
		RootSigners: []crypto.Signer{root}, Targets: targets, Snapshot: snap, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{prod.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "fw.img")
	os.WriteFile(img, bytes.Repeat([]byte{7}, 1000), 0o644)
	if _, err := r.AddRelease(repo.ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: "1.1.0", SecurityVersion: 1,
		Models: []string{"x1"}, Compress: repo.CompressNone, Signers: []crypto.Signer{prod}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(snap, ts); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(data, 0o700)
	db, err := store.Open(ctx, filepath.Join(data, server.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := server.New(server.Config{DataDir: data, RepoDir: repoDir, DB: db, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), RolloutTick: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	defer func() { cancel(); <-done }()
	base := "https://" + srv.Addr().String()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, srv.CAPEM(), 0o644)

	// Each change needs a fresh TOTP step, so each uses its own user.
	user := func(name, role string) (tokenFile string, code string) {
		_, tok, _, err := server.CreateUser(ctx, db, name, role, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		kek, _, err := server.LoadOrCreateKEK(filepath.Join(data, server.KEKFile))
		if err != nil {
			t.Fatal(err)
		}
		uri, err := server.EnrollTOTP(ctx, db, kek, name)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(uri)
		secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(u.Query().Get("secret"))
		if err != nil {
			t.Fatal(err)
		}
		tokenFile = filepath.Join(t.TempDir(), name+".token")
		os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600)
		return tokenFile, server.TOTPCode(secret, time.Now())
	}
	rmTok, rmCode := user("rm", server.RoleReleaseManager)
	c, err := adminFlags{&base, &rmTok, &rmCode, &caFile}.client()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.do(ctx, "POST", "/api/v1/admin/releases", server.CreateReleaseRequest{Product: "acme/router-x1", Version: "1.1.0", Environment: "dev"}, nil); err != nil {
		t.Fatal(err)
	}

	tok1, code1 := user("op1", server.RoleOperator)
	admin := func(tok, code string) []string {
		return []string{"--server", base, "--token-file", tok, "--totp", code, "--ca", caFile}
	}
	code, out, errOut := runCLI(t, append(append([]string{"rollout", "create"}, admin(tok1, code1)...),
		"--release", "acme/router-x1@1.1.0", "--filter", "model=x1 hw_rev>=2", "--stages", "canary:10,5%,25%,100%",
		"--success-threshold", "95%", "--failure-threshold", "2%", "--window", "0 2 * * *,4h,Europe/Berlin")...)
	if code != ExitOK || !strings.HasPrefix(out, "ro-") {
		t.Fatalf("rollout create: exit %d\n%s\n%s", code, out, errOut)
	}
	id := strings.TrimSpace(out)

	tok2, code2 := user("op2", server.RoleOperator)
	code, out, errOut = runCLI(t, append(append([]string{"rollout", "start"}, admin(tok2, code2)...), "--reason", "canary first", id)...)
	if code != ExitOK || !strings.Contains(out, "running") || !strings.Contains(out, "canary") {
		t.Fatalf("rollout start: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, append(append([]string{"rollout", "status"}, admin(tok2, "")...), id)...)
	if code != ExitOK || !strings.Contains(out, "operator start: canary first") || !strings.Contains(out, "maintenance window") {
		t.Fatalf("rollout status: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, append([]string{"rollout", "list"}, admin(tok2, "")...)...)
	if code != ExitOK || !strings.Contains(out, id) {
		t.Fatalf("rollout list: exit %d\n%s", code, out)
	}
	// A replayed TOTP code is refused; a missing one is a usage error.
	code, _, errOut = runCLI(t, append(append([]string{"rollout", "pause"}, admin(tok2, code2)...), id)...)
	if code != ExitFailure || !strings.Contains(errOut, "401") {
		t.Fatalf("replayed TOTP: exit %d %s", code, errOut)
	}
	if code, _, _ = runCLI(t, append(append([]string{"rollout", "pause"}, admin(tok2, "")...), id)...); code != ExitUsage {
		t.Fatalf("missing TOTP: exit %d, want %d", code, ExitUsage)
	}
	if code, _, _ = runCLI(t, "rollout", "status", id); code != ExitUsage {
		t.Fatalf("status without --server: exit %d", code)
	}

	// director-root prints a root that verifies against itself.
	code, out, errOut = runCLI(t, "server", "director-root", "--data", data)
	if code != ExitOK {
		t.Fatalf("director-root: %d %s", code, errOut)
	}
	st := trust.NewMemStore()
	st.Put("root.json", []byte(strings.TrimSpace(out)))
	if _, err := trust.New(st, &trust.MapSource{}, trust.Config{}); err != nil {
		t.Fatalf("director root does not verify: %v", err)
	}
}
