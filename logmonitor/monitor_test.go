package logmonitor

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/witnesstest"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/tlog"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// env is a repository with a transparency log, served over HTTP.
type env struct {
	r                       *repo.Repo
	dir                     string
	root, targets, snap, ts crypto.Signer
	logKey                  crypto.Signer
	product                 []crypto.Signer
	srv                     *httptest.Server
	policy                  tlog.Policy
	state                   string
}

func gen(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEnv(t testing.TB, witnesses func(logVKey string) []tlog.Witness) *env {
	t.Helper()
	e := &env{dir: filepath.Join(t.TempDir(), "repo"), root: gen(t), targets: gen(t), snap: gen(t), ts: gen(t), logKey: gen(t),
		product: []crypto.Signer{gen(t), gen(t)}, state: t.TempDir()}
	origin := "airlock.log/monitor-test"
	var ws []tlog.Witness
	if witnesses != nil {
		_, vkey, err := repo.LogNoteSigner(origin, e.logKey)
		if err != nil {
			t.Fatal(err)
		}
		ws = witnesses(vkey)
	}
	r, err := repo.Init(e.dir, repo.InitOptions{RootKeys: []crypto.PublicKey{e.root.Public()}, RootSigners: []crypto.Signer{e.root},
		Targets: e.targets, Snapshot: e.snap, Timestamp: e.ts,
		Log:     &repo.LogOptions{Key: e.logKey.Public(), Origin: origin, Witnesses: ws, Threshold: len(ws)},
		Options: repo.Options{LogSigner: e.logKey, LogTimeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{e.product[0].Public(), e.product[1].Public()}, 1, e.targets); err != nil {
		t.Fatal(err)
	}
	e.publish(t)
	root, err := r.PublishedRoot()
	if err != nil {
		t.Fatal(err)
	}
	if e.policy, _, err = repo.RootPolicy(root); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(http.FileServer(http.Dir(r.PublicDir())))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) publish(t testing.TB) *repo.PublishResult {
	t.Helper()
	res, err := e.r.Publish(e.snap, e.ts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *env) release(t testing.TB, version string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "firmware.img")
	data := make([]byte, 4096)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.AddRelease(repo.ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: version, SecurityVersion: 1,
		Models: []string{"x1"}, Compress: repo.CompressNone, Signers: []crypto.Signer{e.product[0]}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t)
}

func (e *env) run(t testing.TB, mod func(*Config)) (*Report, error) {
	t.Helper()
	cfg := Config{RepoURL: e.srv.URL, StateDir: e.state}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return Run(ctx, cfg)
}

// forge appends an entry to the log directory at dir with the log key, as
// an attacker holding the log key (and a release key) would, bypassing the
// repository.
func forge(t testing.TB, dir string, logKey crypto.Signer, policy tlog.Policy, en tlog.Entry) {
	t.Helper()
	ns, _, err := repo.LogNoteSigner(policy.Origin(), logKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drv, err := posix.New(ctx, posix.Config{Path: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	a, shutdown, _, err := tessera.NewAppender(ctx, drv, tessera.NewAppendOptions().WithCheckpointSigner(ns).
		WithCheckpointInterval(100*time.Millisecond).WithBatching(1, 10*time.Millisecond).WithCheckpointRepublishInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := en.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Add(ctx, tessera.NewEntry(leaf))(); err != nil {
		t.Fatal(err)
	}
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func forgedEntry(version, signer string) tlog.Entry {
	sum := sha256.Sum256([]byte(version))
	return tlog.Entry{Type: tlog.EntryType, Product: "acme/router-x1", Version: version,
		Target: "acme/router-x1/" + version + "/firmware.img", TargetSHA256: fmt.Sprintf("%x", sum),
		Role: "acme.router-x1", RoleVersion: 9, Signers: []string{signer}, Logged: "2026-12-08T01:02:03Z"}
}

func kinds(rep *Report) []string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, p.Kind)
	}
	return out
}

func TestMonitorListsReleasesAndResumes(t *testing.T) {
	e := newEnv(t, nil)
	e.release(t, "1.0.0")
	e.release(t, "1.1.0")
	rep, err := e.run(t, func(c *Config) {
		c.Expected = map[string]bool{"acme/router-x1@1.0.0": true, "acme/router-x1@1.1.0": true}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || !rep.Saved || rep.Size != 2 || len(rep.Releases) != 2 {
		t.Fatalf("report %+v", rep)
	}
	id, _ := keys.KeyID(e.product[0].Public())
	if r := rep.Releases[1]; r.Index != 1 || r.Entry.Version != "1.1.0" || len(r.Entry.Signers) != 1 || r.Entry.Signers[0] != id {
		t.Errorf("release %+v", r)
	}
	// The next run reads only what is new.
	e.release(t, "1.2.0")
	rep, err = e.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PrevSize != 2 || len(rep.Releases) != 1 || rep.Releases[0].Index != 2 || rep.Releases[0].Entry.Version != "1.2.0" {
		t.Errorf("second run %+v", rep)
	}
}

func TestMonitorFlagsAnUnknownSigner(t *testing.T) {
	e := newEnv(t, nil)
	e.release(t, "1.0.0")
	// A stolen log key and a key that was never delegated.
	stranger, _ := keys.KeyID(gen(t).Public())
	forge(t, e.r.PublicDir(), e.logKey, e.policy, forgedEntry("6.6.6", stranger))
	rep, err := e.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k) != 1 || k[0] != UnknownSigner || rep.Problems[0].Index != 1 || rep.Saved {
		t.Fatalf("problems %v (saved %v), want one unknown signer at entry 1", rep.Problems, rep.Saved)
	}
	// Not saved: the next run flags it again.
	rep, err = e.run(t, nil)
	if err != nil || len(rep.Problems) != 1 {
		t.Errorf("second run: %v, %v", rep, err)
	}
}

func TestMonitorFlagsAReleaseNotExpected(t *testing.T) {
	e := newEnv(t, nil)
	e.release(t, "1.0.0")
	// Signed with a delegated key (stolen), but not a release the vendor made.
	id, _ := keys.KeyID(e.product[1].Public())
	forge(t, e.r.PublicDir(), e.logKey, e.policy, forgedEntry("1.0.1-targeted", id))
	exp, err := ParseExpected([]byte("# releases\nacme/router-x1@1.0.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.run(t, func(c *Config) { c.Expected = exp })
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k) != 1 || k[0] != NotExpected || !strings.Contains(rep.Problems[0].Msg, "1.0.1-targeted") {
		t.Fatalf("problems %v, want the targeted release not expected", rep.Problems)
	}
}

// copyDir copies a directory tree (a fork of the log).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

func TestMonitorFlagsASplitView(t *testing.T) {
	e := newEnv(t, nil)
	e.release(t, "1.0.0")
	id, _ := keys.KeyID(e.product[0].Public())
	// Fork the log: one view for the monitor, another for a device.
	fork := filepath.Join(t.TempDir(), "fork")
	copyDir(t, e.r.PublicDir(), fork)
	forge(t, e.r.PublicDir(), e.logKey, e.policy, forgedEntry("2.0.0", id))
	forge(t, fork, e.logKey, e.policy, forgedEntry("2.0.0-evil", id))
	rep, err := e.run(t, nil)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("first view: %v, %v", rep, err)
	}
	forkCP, err := os.ReadFile(filepath.Join(fork, "log", "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}

	// A checkpoint seen elsewhere (a witness's state, a device's copy).
	rep, err = e.run(t, func(c *Config) { c.Checkpoints = [][]byte{forkCP} })
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k) != 1 || k[0] != SplitView {
		t.Fatalf("problems %v, want a split view", rep.Problems)
	}

	// The stored checkpoint against the fork served.
	forkSrv := httptest.NewServer(http.FileServer(http.Dir(fork)))
	defer forkSrv.Close()
	rep, err = e.run(t, func(c *Config) { c.RepoURL = forkSrv.URL })
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k) != 1 || k[0] != SplitView {
		t.Fatalf("problems %v, want a split view against the stored checkpoint", rep.Problems)
	}
}

func TestMonitorFlagsARollback(t *testing.T) {
	e := newEnv(t, nil)
	e.release(t, "1.0.0")
	old := filepath.Join(t.TempDir(), "old")
	copyDir(t, e.r.PublicDir(), old)
	e.release(t, "1.1.0")
	if rep, err := e.run(t, nil); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("first run: %v, %v", rep, err)
	}
	oldSrv := httptest.NewServer(http.FileServer(http.Dir(old)))
	defer oldSrv.Close()
	rep, err := e.run(t, func(c *Config) { c.RepoURL = oldSrv.URL })
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k) != 1 || k[0] != Rollback {
		t.Fatalf("problems %v, want a rollback", rep.Problems)
	}
	// A newer checkpoint given while the repository serves an older one.
	newer, err := StoredCheckpoint(e.state)
	if err != nil {
		t.Fatal(err)
	}
	state2 := t.TempDir()
	rep, err = e.run(t, func(c *Config) { c.RepoURL, c.StateDir, c.Checkpoints = oldSrv.URL, state2, [][]byte{newer} })
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k) != 1 || k[0] != Rollback {
		t.Fatalf("problems %v, want a rollback against the given checkpoint", rep.Problems)
	}
}

func TestMonitorRefusesAForgedCheckpoint(t *testing.T) {
	e := newEnv(t, nil)
	e.release(t, "1.0.0")
	// Signed by another key under the log's name.
	ns, _, err := repo.LogNoteSigner(e.policy.Origin(), gen(t))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("%s\n1\n%s\n", e.policy.Origin(), base64.StdEncoding.EncodeToString(make([]byte, 32)))
	forged, err := note.Sign(&note.Note{Text: body}, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.r.PublicDir(), "log", "checkpoint"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run(t, nil); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "checkpoint signature") {
		t.Errorf("forged checkpoint: %v, want checkpoint signature", err)
	}
}

// TestMonitorWithTwoWitnesses runs two real witnesses (omniwitness) on
// 127.0.0.1 and checks the monitor counts their cosignatures.
func TestMonitorWithTwoWitnesses(t *testing.T) {
	var ws []*witnesstest.Witness
	e := newEnv(t, func(logVKey string) []tlog.Witness {
		ws = []*witnesstest.Witness{witnesstest.Start(t, "w1.test", logVKey), witnesstest.Start(t, "w2.test", logVKey)}
		var out []tlog.Witness
		for _, w := range ws {
			out = append(out, tlog.Witness{Name: w.Name, Key: w.VKey, URL: w.URL})
		}
		return out
	})
	e.release(t, "1.0.0")
	rep, err := e.run(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Witnesses) != 2 || len(rep.Problems) != 0 {
		t.Fatalf("witnesses %v, problems %v", rep.Witnesses, rep.Problems)
	}
	// Too few cosignatures: the policy asks for a third witness.
	p := e.policy
	_, vkey, _ := note.GenerateKey(rand.Reader, "w3.test")
	cp, err := os.ReadFile(filepath.Join(e.r.PublicDir(), "log", "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	w3, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	p.Witnesses = append(p.Witnesses, tlog.Witness{Name: "w3.test", Key: w3})
	p.Threshold = 3
	if _, _, _, err := VerifyCheckpoint(cp, p); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "witness cosignatures (2 of 3 valid, need 3)") {
		t.Errorf("VerifyCheckpoint with 3 required: %v", err)
	}
}

func TestParseExpected(t *testing.T) {
	got, err := ParseExpected([]byte("# comment\nacme/router-x1@1.0.0\n\nacme/router-x1 1.1.0\n"))
	if err != nil || len(got) != 2 || !got["acme/router-x1@1.0.0"] || !got["acme/router-x1@1.1.0"] {
		t.Errorf("ParseExpected = %v, %v", got, err)
	}
	for _, bad := range []string{"acme/router-x1\n", "a b c\n", "@1.0\n"} {
		if _, err := ParseExpected([]byte(bad)); err == nil {
			t.Errorf("ParseExpected(%q) accepted", bad)
		}
	}
}

func FuzzParseExpected(f *testing.F) {
	f.Add([]byte("acme/router-x1@1.0.0\n# x\nacme/y 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseExpected(data)
		if err != nil {
			return
		}
		for k := range m {
			if p, v, ok := strings.Cut(k, "@"); !ok || p == "" || v == "" {
				t.Errorf("accepted %q", k)
			}
		}
	})
}

func FuzzVerifyCheckpoint(f *testing.F) {
	signer, err := keys.Generate(keys.Ed25519)
	if err != nil {
		f.Fatal(err)
	}
	ns, vkey, err := repo.LogNoteSigner("airlock.log/fuzz", signer)
	if err != nil {
		f.Fatal(err)
	}
	good, err := note.Sign(&note.Note{Text: "airlock.log/fuzz\n1\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"}, ns)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	policy := tlog.Policy{Log: vkey}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, root, _, err := VerifyCheckpoint(data, policy)
		if err == nil && len(root) != 32 {
			t.Errorf("accepted a root of %d bytes", len(root))
		}
	})
}
