package servercmd

import (
	"bytes"
	"context"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/servicetest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestServerTokenCommandsPrintTheSecretOnce(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{
		{"server", "token", "create", "--data", data, "--name", "ops"},
		{"server", "token", "create", "--data", data, "--name", "prom", "--role", "viewer"},
		{"server", "enroll-token", "create", "--data", data, "--uses", "5", "--ttl", "1h", "--product", "acme/x1"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != cli.ExitOK || !regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`).MatchString(out) || !strings.Contains(errOut, "shown only once") {
			t.Fatalf("%v: exit %d\nstdout %q\nstderr %s", args, code, out, errOut)
		}
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		in   string
	}{
		{[]string{"serve"}, "--data and one of --repo and --storage are required"},
		{[]string{"serve", "--data", "d", "--repo", "r", "--storage", "s3://bucket"}, "--data and one of --repo and --storage are required"},
		{[]string{"serve", "--data", "d", "--storage", "bucket/x"}, "--storage: "},
		{[]string{"serve", "--data", "d", "--storage", "s3://UPPER/x"}, "--storage: "},
		{[]string{"serve", "--data", "d", "--storage", "s3://bucket/../x"}, "--storage: "},
		{[]string{"repo", "push", "--dir", "d", "--to", "https://bucket"}, "--to: "},
		{[]string{"serve", "--data", "d", "--repo", "r", "--tls-cert", "c"}, "--tls-cert and --tls-key go together"},
		{[]string{"serve", "--data", "d", "--repo", "r", "--poll-interval", "1ms"}, "--poll-interval"},
		{[]string{"server", "token", "create", "--data", "d"}, "--name is required"},
		{[]string{"server", "token", "create", "--data", "d", "--name", "n", "--role", "root"}, "--role"},
		{[]string{"server", "enroll-token", "create", "--data", "d", "--uses", "0"}, "--uses"},
		{[]string{"server", "enroll-token", "create", "--data", "d", "--ttl", "100000h"}, "--ttl"},
	} {
		code, _, errOut := runCLI(t, tt.args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, tt.in) {
			t.Errorf("%v: exit %d, stderr %s", tt.args, code, errOut)
		}
	}
}

func TestServePrintsFingerprintAndStopsOnSignal(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	for _, d := range []string{"public/metadata", "public/targets"} {
		if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stderr servicetest.Buffer
	e := &cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() {
		done <- run(e, []string{"serve", "--data", filepath.Join(tmp, "data"), "--repo", repo, "--listen", "127.0.0.1:0"})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"listening","url":"https://127.0.0.1:`) {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !regexp.MustCompile(`"msg":"server CA","path":"[^"]+/ca.pem","sha256":"[0-9a-f]{64}"`).MatchString(stderr.String()) {
		t.Fatalf("no CA fingerprint printed:\n%s", stderr.String())
	}
	cancel() // what SIGTERM does
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Fatalf("exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Stat(filepath.Join(tmp, "data", "ca.key")); err != nil {
		t.Fatal(err)
	}
}
