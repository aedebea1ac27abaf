package servercmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/servicetest"
)

type serveRun struct {
	tmp    string
	stderr *servicetest.Buffer
	cancel context.CancelFunc
	done   chan int
}

// startServe runs 'airlock serve' in-process with env as its environment.
func startServe(t *testing.T, env map[string]string, extra ...string) *serveRun {
	t.Helper()
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	for _, d := range []string{"public/metadata", "public/targets"} {
		if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &serveRun{tmp: tmp, stderr: &servicetest.Buffer{}, cancel: cancel, done: make(chan int, 1)}
	e := &cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: r.stderr, Getenv: func(k string) string { return env[k] }}
	args := append([]string{"serve", "--data", filepath.Join(tmp, "data"), "--repo", repo, "--listen", "127.0.0.1:0"}, extra...)
	go func() { r.done <- run(e, args) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels serve (what SIGTERM does) and checks it exits 0.
func (r *serveRun) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case code := <-r.done:
		if code != cli.ExitOK {
			t.Fatalf("serve exit %d:\n%s", code, r.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestServeLogsJSONAndNotifiesSystemd(t *testing.T) {
	sock, states := servicetest.Notifications(t)
	r := startServe(t, map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "100000"})
	servicetest.WaitFor(t, states, "READY=1")
	servicetest.WaitFor(t, states, "WATCHDOG=1") // every 50 ms from the serving loop
	servicetest.WaitFor(t, states, "WATCHDOG=1")

	var url string
	for _, rec := range servicetest.JSONLines(t, r.stderr.String()) {
		if rec["msg"] == "listening" {
			url, _ = rec["url"].(string)
		}
	}
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("no listening line:\n%s", r.stderr.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(r.tmp, "data", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := c.Get(url + "/repo/metadata/absent.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// A secret in a request must not reach the log.
	req, _ := http.NewRequest("GET", url+"/api/v1/admin/devices", nil)
	req.Header.Set("Authorization", "Bearer secret-token-that-must-not-be-logged")
	req.Header.Set("X-Airlock-TOTP", "123456")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r.stop(t)
	servicetest.WaitFor(t, states, "STOPPING=1")

	out := r.stderr.String()
	recs := servicetest.JSONLines(t, out)
	msgs := map[string]map[string]any{}
	for _, rec := range recs {
		msgs[rec["msg"].(string)] = rec
	}
	if ca := msgs["server CA"]; ca == nil || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ca["sha256"].(string)) {
		t.Errorf("no server CA line with its fingerprint:\n%s", out)
	}
	for _, m := range []string{"request", "shutting down"} {
		if msgs[m] == nil {
			t.Errorf("no %q line:\n%s", m, out)
		}
	}
	for _, secret := range []string{"secret-token-that-must-not-be-logged", "123456"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

func TestServeLogLevelFilters(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		keep []string // levels that may appear
	}{
		{"flag", nil, []string{"--log-level", "warn"}, []string{"WARN", "ERROR"}},
		{"environment", map[string]string{"AIRLOCK_LOG_LEVEL": "error"}, nil, []string{"ERROR"}},
		{"flag over environment", map[string]string{"AIRLOCK_LOG_LEVEL": "debug"}, []string{"--log-level", "error"}, []string{"ERROR"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sock, states := servicetest.Notifications(t)
			env := map[string]string{"NOTIFY_SOCKET": sock}
			for k, v := range tt.env {
				env[k] = v
			}
			r := startServe(t, env, tt.args...)
			servicetest.WaitFor(t, states, "READY=1")
			r.stop(t)
			// Start-up and shutdown lines are info: they are gone.
			out := r.stderr.String()
			for _, rec := range servicetest.JSONLines(t, out) {
				if !slices.Contains(tt.keep, rec["level"].(string)) {
					t.Fatalf("a line below the level:\n%s", out)
				}
			}
			if strings.Contains(out, `"msg":"listening"`) {
				t.Fatalf("info line logged:\n%s", out)
			}
		})
	}
	for _, args := range [][]string{{"--log-level", "verbose"}, {"--log-level", "INFO+2"}, {"--log-level", "WARN"}} {
		code, _, errOut := runCLI(t, append([]string{"serve", "--data", "d", "--repo", "r"}, args...)...)
		if code != cli.ExitUsage || !strings.Contains(errOut, args[0]) {
			t.Errorf("%v: exit %d, stderr %s", args, code, errOut)
		}
	}
}
