package devicecmd

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/servicetest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// agentSetup provisions a device at 1.0.0 from the CLI, publishes 1.1.0
// in a repository served over TLS, and writes an agent config for it.
func agentSetup(t *testing.T) (agentConfig string) {
	t.Helper()
	v := newDeviceVendor(t)
	b10 := v.bundle("1.0.0", 1)
	v.bundle("1.1.0", 2)
	dir := filepath.Join(t.TempDir(), "dev")
	root := filepath.Join(v.dir, "public", "metadata", "1.root.json")
	if code, out, errOut := runCLI(t, "device", "init", "--dir", dir, "--root", root, "--model", "x1", "--hw-rev", "3",
		"--slot-size", "1MiB", "--image", b10, "--health-cmd", "echo agent-health-ok", "--health-timeout", "5s"); code != cli.ExitOK {
		t.Fatalf("device init: exit %d\n%s%s", code, out, errOut)
	}
	srv := httptest.NewTLSServer(http.FileServer(http.Dir(filepath.Join(v.dir, "public"))))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "agent.toml")
	text := fmt.Sprintf("device_config = %q\nserver_ca = %q\nmetadata_url = %q\ntargets_url = %q\nprogress = \"log\"\n",
		filepath.Join(dir, "device.toml"), ca, srv.URL+"/metadata", srv.URL+"/targets")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentLogsJSONAndNotifiesSystemd(t *testing.T) {
	config := agentSetup(t)
	sock, states := servicetest.Notifications(t)
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "100000"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr lockedBuffer
	e := &cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
	done := make(chan int, 1)
	go func() { done <- run(e, []string{"agent", "--config", config}) }()
	servicetest.WaitFor(t, states, "READY=1")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"poll done","action":"committed","version":"1.1.0"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not commit 1.1.0:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	servicetest.WaitFor(t, states, "WATCHDOG=1")
	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Fatalf("agent exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop")
	}
	servicetest.WaitFor(t, states, "STOPPING=1")
	out := stderr.String()
	seen := map[string]bool{}
	for _, r := range servicetest.JSONLines(t, out) {
		seen[r["msg"].(string)] = true
		if r["msg"] == "health check output" && r["line"] == "agent-health-ok" {
			seen["health line"] = true
		}
	}
	for _, m := range []string{"downloading", "downloaded", "update committed", "health line"} {
		if !seen[m] {
			t.Errorf("no %q record:\n%s", m, out)
		}
	}
}

func TestAgentLogLevelFilters(t *testing.T) {
	config := agentSetup(t)
	var stderr bytes.Buffer
	e := &cli.Env{Ctx: t.Context(), Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr,
		Getenv: func(k string) string { return map[string]string{"AIRLOCK_LOG_LEVEL": "error"}[k] }}
	if code := run(e, []string{"agent", "--config", config, "--once"}); code != cli.ExitOK {
		t.Fatalf("agent --once: exit %d\n%s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Fatalf("AIRLOCK_LOG_LEVEL=error: an update that went well logged:\n%s", stderr.String())
	}
	stderr.Reset()
	e.Getenv = func(k string) string { return map[string]string{"AIRLOCK_LOG_LEVEL": "error"}[k] }
	if code := run(e, []string{"agent", "--config", config, "--once", "--log-level", "debug"}); code != cli.ExitOK {
		t.Fatalf("agent --once: exit %d\n%s", code, stderr.String())
	}
	recs := servicetest.JSONLines(t, stderr.String())
	if len(recs) == 0 || recs[len(recs)-1]["msg"] != "poll done" || !strings.HasPrefix(fmt.Sprint(recs[len(recs)-1]["result"]), "up to date: version 1.1.0 runs") {
		t.Fatalf("--log-level debug over AIRLOCK_LOG_LEVEL=error logged no poll result:\n%s", stderr.String())
	}
	code, _, errOut := runCLI(t, "agent", "--config", config, "--once", "--log-level", "loud")
	if code != cli.ExitUsage || !strings.Contains(errOut, "--log-level") {
		t.Fatalf("--log-level loud: exit %d\n%s", code, errOut)
	}
}
