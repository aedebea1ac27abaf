package servercmd

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base32"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
)

// govServer is a running update server over a repository with release
// acme/router-x1 1.1.0 published, for admin API command tests.
type govServer struct {
	ctx          context.Context
	base, caFile string
	data         string
	db           store.Store
	// user creates a user with a role and TOTP; it returns the token file
	// and a current TOTP code.
	user func(name, role string) (tokenFile, code string)
}

func newGovServer(t *testing.T) *govServer {
	t.Helper()
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
	t.Cleanup(func() { db.Close() })
	srv, err := server.New(server.Config{DataDir: data, RepoDir: repoDir, DB: db, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), RolloutTick: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	t.Cleanup(func() { cancel(); <-done })
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
	return &govServer{ctx: ctx, base: base, caFile: caFile, data: data, db: db, user: user}
}
