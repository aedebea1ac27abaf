// Package witnesstest runs real C2SP tlog-witness witnesses for tests:
// transparency-dev's omniwitness (github.com/transparency-dev/witness), on
// 127.0.0.1 with a fresh cosignature key and SQLite state in a temporary
// directory, configured to witness one log. It is test infrastructure.
//
// The binary is found, in order, at $AIRLOCK_OMNIWITNESS, as "omniwitness"
// on PATH, or in the user cache directory
// (~/.cache/airlock-test/omniwitness-<Version>/omniwitness); if absent it is
// built there from the Go module proxy with `go install` (a minute or two,
// once; scripts/test.sh does it before the tests). When it cannot be
// obtained, Start skips the test, unless AIRLOCK_REQUIRE_TOOLS=1 or CI is
// set: then it fails.
package witnesstest

import (
	"crypto/rand"
	"fmt"
	"github.com/airlockfw/airlock/internal/testbin"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Version is the witness module version built when none is installed.
const Version = "v0.0.0-20260720115447-2e1c6971d19e"

// Module is the package built by go install.
const Module = "github.com/transparency-dev/witness/cmd/omniwitness"

// Timeouts and attempts.
const (
	BuildTimeout  = 15 * time.Minute
	StartTimeout  = 30 * time.Second
	StartAttempts = 3
)

// tool is the binary the tests run.
var tool = &testbin.Tool{Name: "omniwitness", Module: Module, Version: Version, EnvVar: "AIRLOCK_OMNIWITNESS", BuildTimeout: BuildTimeout}

// Witness is a running witness.
type Witness struct {
	// Name is the witness's key name; VKey its cosignature/v1 verifier
	// key; URL its root ("http://127.0.0.1:PORT/"), to which tessera posts
	// add-checkpoint requests.
	Name, VKey, URL string
	// DBFile is its SQLite state (the latest checkpoint per log).
	DBFile string
	kill   func()
}

// Start starts a witness named name that witnesses the log whose note
// verifier key is logVKey (origin included), and stops it at cleanup. It
// skips (or fails under scripts/test.sh and in CI: testbin.Required) when the binary is unavailable.
func Start(t testing.TB, name, logVKey string) *Witness {
	t.Helper()
	bin := tool.Require(t)
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "witness.key")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		t.Fatal(err)
	}
	origin, _, _ := strings.Cut(logVKey, "+")
	logsFile := filepath.Join(dir, "logs.yaml")
	logs := fmt.Sprintf("Logs:\n  - Origin: %q\n    URL: \"http://127.0.0.1/unused\"\n    PublicKey: %q\n", origin, logVKey)
	if err := os.WriteFile(logsFile, []byte(logs), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &Witness{Name: name, VKey: cosig, DBFile: filepath.Join(dir, "witness.db")}
	logf, err := os.Create(filepath.Join(dir, "omniwitness.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("omniwitness %s log:\n%s", name, b)
			}
		}
	})
	// Ports are picked free, then bound by the witness: another process
	// may take one in between, so a witness that exits at once is retried.
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		metrics, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		w.URL = "http://" + addr + "/"
		cmd := exec.Command(bin, "--listen", addr, "--metrics_listen", metrics, "--private_key_path", keyFile,
			"--db_file", w.DBFile, "--additional_logs", logsFile, "--logtostderr")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		err = wait(w.URL, exited)
		if err == nil {
			w.kill = func() { cmd.Process.Kill(); <-exited }
			return w
		}
		if attempt == StartAttempts {
			t.Fatal(err)
		}
		t.Logf("omniwitness on %s: %v; retrying on other ports", addr, err)
	}
}

// Kill stops the witness at once (an outage).
func (w *Witness) Kill() { w.kill() }

// wait polls until the witness answers HTTP (any status) or exits.
func wait(url string, exited <-chan struct{}) error {
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(StartTimeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("omniwitness did not answer on %s within %v: %w", url, StartTimeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("omniwitness exited before answering on %s", url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
