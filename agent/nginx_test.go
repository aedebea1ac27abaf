package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// requireTool returns the path of a tool, skipping the test when it is
// missing unless AIRLOCK_REQUIRE_TOOLS=1 (then the test fails).
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required (AIRLOCK_REQUIRE_TOOLS=1): apt-get install -y %s", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install -y %s)", name, pkg)
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startNginx serves root over TLS with nginx on a free loopback port,
// with its own config, pid and log files, and returns "https://addr".
func startNginx(t *testing.T, root string, p *pki) string {
	t.Helper()
	bin := requireTool(t, "nginx", "nginx")
	dir := t.TempDir()
	for name, data := range map[string][]byte{"server.crt": p.srvCert, "server.key": p.srvKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freePort(t)
	conf := fmt.Sprintf(`user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  default_type application/octet-stream;
  server {
    listen %[2]s ssl;
    ssl_certificate %[1]s/server.crt;
    ssl_certificate_key %[1]s/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root %[3]s;
    autoindex off;
  }
}
`, dir, addr, root)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-g", "daemon off;")
	// No pipes: nginx's worker would keep them open. SIGTERM (not KILL)
	// lets the master stop its worker.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "https://" + addr
}

// cuttingProxy forwards TCP to target and cuts the first connection after
// the server sent cut bytes (TLS records and all).
func cuttingProxy(t *testing.T, target string, cut int64) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var first atomic.Bool
	first.Store(true)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { defer wg.Done(); io.Copy(s, c) }()
				if first.Swap(false) {
					io.CopyN(c, s, cut)
					c.Close()
					s.Close()
				} else {
					io.Copy(c, s)
				}
				wg.Wait()
			}()
		}
	}()
	return l.Addr().String()
}

// TestUpdateFromNginxRepositoryOnly updates a device from a plain static
// server (nginx), with the device API disabled, and resumes a download cut
// by the network using nginx's own Range and If-Range (ETag) support.
func TestUpdateFromNginxRepositoryOnly(t *testing.T) {
	e := newRepoEnv(t)
	base := startNginx(t, e.v.r.PublicDir(), e.pki)
	t.Run("update", func(t *testing.T) {
		devCfg := newDevice(t, e.v, e.initial)
		a := newTestAgent(t, repoConfig(t, devCfg, base, e.caPath, "5s"))
		res, err := a.RunOnce(context.Background())
		if err != nil || res.Action != ActionCommitted || res.Version != "1.1.0" {
			t.Fatalf("RunOnce = %+v, %v; want committed 1.1.0", res, err)
		}
		if v, _ := deviceVersion(t, devCfg); v != "1.1.0" {
			t.Fatalf("device runs %q", v)
		}
	})
	t.Run("resume after a cut", func(t *testing.T) {
		// Metadata is small; the cut lands inside the payload download
		// of the first connection that carries more than 300 KiB.
		proxy := cuttingProxy(t, base[len("https://"):], 300<<10)
		devCfg := newDevice(t, e.v, e.initial)
		// Metadata from nginx directly, targets through the proxy.
		a := newTestAgent(t, repoConfig(t, devCfg, base, e.caPath, "5s"))
		a.cfg.TargetsURL = "https://" + proxy + "/targets"
		res, err := a.RunOnce(context.Background())
		if err != nil || res.Action != ActionCommitted {
			t.Fatalf("RunOnce = %+v, %v; want committed", res, err)
		}
	})
}
