package servercmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/objstore/s3test"
	"github.com/airlockfw/airlock/internal/servicetest"
	"github.com/airlockfw/airlock/repo/repotest"
)

// TestRepoPushAndServeFromS3 runs the commands an operator runs: `airlock
// repo push` to a real S3 server (versitygw over TLS, credentials from the
// environment), twice (the second uploads nothing), then `airlock serve
// --storage` from the bucket, fetched over HTTPS: metadata byte for byte
// and a payload range (206). The secret key appears in no output.
func TestRepoPushAndServeFromS3(t *testing.T) {
	s3srv := s3test.Start(t)
	s3srv.Bucket(t, "fleet", "")
	v := repotest.New(t, repotest.Options{})
	v.Release("1.0.0", 1, repotest.Image(5, 1<<20), nil)
	dir := v.Repo.Dir()
	env := map[string]string{"AWS_ACCESS_KEY_ID": s3srv.AccessKey, "AWS_SECRET_ACCESS_KEY": s3srv.SecretKey}
	s3flags := []string{"--s3-endpoint", s3srv.Endpoint, "--s3-ca", s3srv.CertFile()}
	getenv := func(k string) string { return env[k] }

	push := func() (string, string) {
		var out, errb bytes.Buffer
		e := &cli.Env{Ctx: t.Context(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: getenv}
		if code := run(e, append([]string{"repo", "push", "--dir", dir, "--to", "s3://fleet/acme/"}, s3flags...)); code != cli.ExitOK {
			t.Fatalf("repo push: exit %d\n%s", code, errb.String())
		}
		if strings.Contains(out.String()+errb.String(), s3srv.SecretKey) {
			t.Fatal("repo push printed the secret key")
		}
		return out.String(), errb.String()
	}
	out, errOut := push()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 6 || lines[len(lines)-1] != "metadata/timestamp.json" || !strings.HasPrefix(lines[0], "targets/") {
		t.Errorf("first push printed %q", lines)
	}
	if !regexp.MustCompile(`pushed \d+ objects \(\d+ bytes\) to s3://fleet/acme at https://127\.0\.0\.1:\d+, 0 already there`).MatchString(errOut) {
		t.Errorf("first push summary: %s", errOut)
	}
	out, errOut = push()
	if out != "" || !strings.Contains(errOut, "pushed 0 objects (0 bytes)") {
		t.Errorf("second push uploaded %q; %s", out, errOut)
	}
	// Wrong credentials, and plain HTTP without the loopback switch, fail.
	var errb bytes.Buffer
	bad := &cli.Env{Ctx: t.Context(), Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &errb,
		Getenv: func(k string) string {
			return map[string]string{"AWS_ACCESS_KEY_ID": s3srv.AccessKey, "AWS_SECRET_ACCESS_KEY": "wrong-secret-xyz"}[k]
		}}
	if code := run(bad, append([]string{"repo", "push", "--dir", dir, "--to", "s3://fleet/acme"}, s3flags...)); code != cli.ExitFailure || strings.Contains(errb.String(), "wrong-secret-xyz") {
		t.Errorf("push with a wrong secret: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	plain := strings.Replace(s3srv.Endpoint, "https://", "http://", 1)
	if code := run(bad, []string{"repo", "push", "--dir", dir, "--to", "s3://fleet/acme", "--s3-endpoint", plain}); code != cli.ExitFailure || !strings.Contains(errb.String(), "plain HTTP") {
		t.Errorf("push to a plain-HTTP endpoint: exit %d: %s", code, errb.String())
	}

	// Serve from the bucket; no --repo.
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr servicetest.Buffer
	e := &cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr, Getenv: getenv}
	done := make(chan int, 1)
	go func() {
		done <- run(e, append([]string{"serve", "--data", filepath.Join(tmp, "data"), "--storage", "s3://fleet/acme", "--listen", "127.0.0.1:0"}, s3flags...))
	}()
	re := regexp.MustCompile(`"msg":"listening","url":"(https://127\.0\.0\.1:\d+)"`)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m = re.FindStringSubmatch(stderr.String()); m == nil; m = re.FindStringSubmatch(stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !strings.Contains(stderr.String(), `"msg":"repository storage","store":"s3://fleet/acme at https://127.0.0.1:`) {
		t.Errorf("no storage line:\n%s", stderr.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(tmp, "data", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(path, rng string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", m[1]+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	pub := v.Repo.PublicDir()
	wantTS, _ := os.ReadFile(filepath.Join(pub, "metadata", "timestamp.json"))
	if resp, b := get("/repo/metadata/timestamp.json", ""); resp.StatusCode != 200 || !bytes.Equal(b, wantTS) {
		t.Errorf("timestamp.json from the bucket: %d, %d bytes", resp.StatusCode, len(b))
	}
	targets, _ := filepath.Glob(filepath.Join(pub, "targets", "*", "*", "*", "*"))
	if len(targets) != 1 {
		t.Fatalf("targets: %q", targets)
	}
	want, _ := os.ReadFile(targets[0])
	rel, _ := filepath.Rel(filepath.Join(pub, "targets"), targets[0])
	if resp, b := get("/repo/targets/"+filepath.ToSlash(rel), "bytes=1000-1999"); resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, want[1000:2000]) {
		t.Errorf("range from the bucket: %d, %d bytes", resp.StatusCode, len(b))
	}
	if strings.Contains(stderr.String(), s3srv.SecretKey) {
		t.Error("serve logged the secret key")
	}
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Fatalf("serve exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}
