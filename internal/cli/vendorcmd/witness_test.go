package vendorcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/servicetest"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// startWitnessCLI runs 'airlock witness serve' until the test ends and
// returns its verifier key and URL.
func startWitnessCLI(t *testing.T, name, logVKey string) (vkey, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb servicetest.Buffer
	done := make(chan int, 1)
	dir := filepath.Join(t.TempDir(), name)
	go func() {
		done <- run(&cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }},
			[]string{"witness", "serve", "--dir", dir, "--name", name, "--listen", "127.0.0.1:0", "--log", logVKey})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != cli.ExitOK {
			t.Errorf("witness serve %s: exit %d: %s", name, code, errb.String())
		}
	})
	re := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			fi, err := os.Stat(filepath.Join(dir, "witness.key"))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("witness key: %v %v", fi, err)
			}
			return strings.TrimSpace(out.String()), m[1]
		}
	}
	t.Fatalf("witness serve did not start: %s", errb.String())
	return "", ""
}

// TestWitnessServeWithPublish: 'repo publish' (tessera's C2SP tlog-witness
// client) gets the cosignatures of two 'airlock witness serve' witnesses,
// from size 0 and then with a consistency proof; a forked copy of the log
// is refused by both, and its publish fails without writing a timestamp.
func TestWitnessServeWithPublish(t *testing.T) {
	dir, kp, logVKey := logRepoCLI(t)
	origin, _, _ := strings.Cut(logVKey, "+")
	v1, u1 := startWitnessCLI(t, "w1.test", logVKey)
	v2, u2 := startWitnessCLI(t, "w2.test", logVKey)
	mustCLI(t, "repo", "log", "init", "--dir", dir, "--log-key", kp("log"),
		"--witness", "w1.test="+v1+"@"+u1, "--witness", "w2.test="+v2+"@"+u2, "--witness-threshold", "2", "--old-key", kp("root1"))
	img := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(img, bytes.Repeat([]byte("firmware"), 5_000), 0o644)
	release := func(dir, version string) {
		mustCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", version,
			"--security-version", "1", "--model", "x1", "--key", kp("alice"))
	}
	var verifiers []note.Verifier
	for _, v := range []string{v1, v2} {
		cv, err := fnote.NewVerifierForCosignatureV1(v)
		if err != nil {
			t.Fatal(err)
		}
		verifiers = append(verifiers, cv)
	}
	checkpoint := func(dir string) *note.Note {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "public", "log", "checkpoint"))
		if err != nil {
			t.Fatal(err)
		}
		lv, _ := note.NewVerifier(logVKey)
		n, err := note.Open(b, note.VerifierList(append([]note.Verifier{lv}, verifiers...)...))
		if err != nil {
			t.Fatalf("checkpoint %q: %v", b, err)
		}
		return n
	}
	for i, v := range []string{"1.0.0", "1.1.0"} {
		release(dir, v)
		if code, _, errOut := runCLI(t, "repo", "publish", "--dir", dir); code != cli.ExitOK {
			t.Fatalf("publish %s: exit %d: %s", v, code, errOut)
		}
		n := checkpoint(dir)
		if len(n.Sigs) != 3 || !strings.HasPrefix(n.Text, origin+"\n"+string(rune('1'+i))+"\n") {
			t.Fatalf("after %s: checkpoint %q signed by %d keys, want the log and both witnesses", v, n.Text, len(n.Sigs))
		}
	}

	// A fork: a copy of the repository taken before 1.1.0 was logged would
	// need the witnesses to cosign a second tree of size 2.
	fork := filepath.Join(t.TempDir(), "fork")
	if err := os.CopyFS(fork, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	release(dir, "1.2.0")
	mustCLI(t, "repo", "publish", "--dir", dir)
	release(fork, "1.2.1")
	forkTS, _ := os.ReadFile(filepath.Join(fork, "public", "metadata", "timestamp.json"))
	logKey, err := keys.LoadPrivate(kp("log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := repo.OpenWith(fork, repo.Options{LogSigner: logKey, LogTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := keys.LoadPrivate(kp("snap"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := keys.LoadPrivate(kp("ts"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fr.Publish(snap, ts); err == nil {
		t.Fatal("a forked log was cosigned")
	} else if !strings.Contains(err.Error(), "no checkpoint covering the new entries") {
		t.Errorf("forked publish failed for another reason: %v", err)
	} else {
		t.Logf("forked publish refused: %v", err)
	}
	if ts, _ := os.ReadFile(filepath.Join(fork, "public", "metadata", "timestamp.json")); !bytes.Equal(ts, forkTS) {
		t.Error("the refused publish wrote a timestamp")
	}
	// The witnesses still follow the real log.
	release(dir, "1.3.0")
	mustCLI(t, "repo", "publish", "--dir", dir)
	if n := checkpoint(dir); len(n.Sigs) != 3 || !strings.HasPrefix(n.Text, origin+"\n4\n") {
		t.Errorf("after the refused fork: checkpoint %q with %d signatures", n.Text, len(n.Sigs))
	}
}
