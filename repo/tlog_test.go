package repo

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/witnesstest"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/tlog"
	"github.com/google/go-cmp/cmp"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// enableLog stages and publishes a root with a transparency policy on f's
// repository, with the given witnesses (threshold k), and returns the log
// key.
func (f *fixture) enableLog(t testing.TB, witnesses []tlog.Witness, k int) crypto.Signer {
	t.Helper()
	logKey := genKey(t, keys.Ed25519)
	res, err := f.r.Rotate(RotateOptions{Role: "root", OldSigners: f.root[:2],
		Log: &LogOptions{Key: logKey.Public(), Witnesses: witnesses, Threshold: k}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Missing != "" {
		t.Fatal(res.Missing)
	}
	f.r.opts.LogSigner = logKey
	f.r.opts.LogTimeout = 20 * time.Second
	f.publish(t)
	return logKey
}

// logEntries reads every entry of the repository's log.
func logEntries(t testing.TB, r *Repo) []tlog.Entry {
	t.Helper()
	root, err := r.PublishedRoot()
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := RootPolicy(root)
	if err != nil || !ok {
		t.Fatalf("no policy: %v", err)
	}
	size, _, _, ok, err := r.readLogCheckpoint(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []tlog.Entry
	if !ok {
		return nil
	}
	if err := readEntries(r.logPath(), 0, size, func(i uint64, leaf []byte) error {
		e, err := tlog.ParseEntry(leaf)
		out = append(out, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPublishLogsEachReleaseOnceBeforeTheTimestamp(t *testing.T) {
	f := newFixture(t)
	f.enableLog(t, nil, 0)
	if got := logEntries(t, f.r); len(got) != 0 {
		t.Fatalf("log holds %d entries before any release", len(got))
	}
	info := f.addRelease(t, "1.1.0", CompressNone, f.product[0], f.product[2])
	res := f.publish(t)
	if res.Log == nil || len(res.Log.Appended) != 1 || res.Log.Appended[info.TargetPath] != 0 {
		t.Fatalf("publish logged %+v, want %s at index 0", res.Log, info.TargetPath)
	}
	entries := logEntries(t, f.r)
	if len(entries) != 1 {
		t.Fatalf("log holds %d entries, want 1", len(entries))
	}
	e := entries[0]
	// The entry commits to the target info exactly as signed.
	role, err := f.r.PublishedRole("acme.router-x1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(role.Signed.Targets[info.TargetPath])
	if err != nil {
		t.Fatal(err)
	}
	digest, err := tlog.TargetDigest(raw)
	if err != nil {
		t.Fatal(err)
	}
	wantSigners := []string{keyID(t, f.product[0]), keyID(t, f.product[2])}
	if wantSigners[0] > wantSigners[1] {
		wantSigners[0], wantSigners[1] = wantSigners[1], wantSigners[0]
	}
	want := tlog.Entry{Type: tlog.EntryType, Product: "acme/router-x1", Version: "1.1.0", Target: info.TargetPath,
		TargetSHA256: digest, Role: "acme.router-x1", RoleVersion: role.Signed.Version, Signers: wantSigners, Logged: e.Logged}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
	if idx, ok, err := f.r.LogIndex(digest); err != nil || !ok || idx != 0 {
		t.Errorf("LogIndex = %d, %v, %v; want 0", idx, ok, err)
	}
	hist, err := f.r.LogHistory()
	if err != nil || len(hist) != 1 || hist[0].Size != 1 {
		t.Fatalf("history = %+v, %v; want one line of size 1", hist, err)
	}
	// The timestamp was written after the checkpoint covering the entry.
	cpInfo, err := os.Stat(f.r.logPath(LogCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	tsInfo, err := os.Stat(f.r.metaPath("timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tsInfo.ModTime().Before(cpInfo.ModTime()) {
		t.Errorf("timestamp.json (%v) was written before the checkpoint (%v)", tsInfo.ModTime(), cpInfo.ModTime())
	}

	// Publishing again, and re-signing the role (a new role version with
	// the same release), appends nothing.
	if res := f.publish(t); len(res.Log.Appended) != 0 {
		t.Errorf("an empty publish appended %v", res.Log.Appended)
	}
	if _, err := f.r.Renew("acme/router-x1", 0, f.product[:2]); err != nil {
		t.Fatal(err)
	}
	if res := f.publish(t); len(res.Log.Appended) != 0 {
		t.Errorf("re-signing the role appended %v", res.Log.Appended)
	}
	f.addRelease(t, "1.2.0", CompressNone, f.product[0], f.product[1])
	if res := f.publish(t); len(res.Log.Appended) != 1 {
		t.Errorf("the second release appended %v", res.Log.Appended)
	}
	if got := logEntries(t, f.r); len(got) != 2 || got[1].Version != "1.2.0" {
		t.Errorf("log = %+v, want 1.1.0 then 1.2.0", got)
	}
	if hist, _ := f.r.LogHistory(); len(hist) != 2 || hist[1].Size != 2 {
		t.Errorf("history = %+v, want sizes 1 and 2", hist)
	}

	// The proof an offline bundle carries for the first release (the
	// bundle writer's, which the device verifies): its inclusion proof
	// and its consistency proof from the first checkpoint check out
	// against the published checkpoint and history.
	rootData, err := os.ReadFile(f.r.metaPath("root.json"))
	if err != nil {
		t.Fatal(err)
	}
	var roleData []byte
	for v := 1; ; v++ { // the newest published version of the product role
		b, err := os.ReadFile(f.r.metaPath(fmt.Sprintf("%d.acme.router-x1.json", v)))
		if err != nil {
			break
		}
		roleData = b
	}
	blob, err := f.r.bundleLogProof(rootData, roleData, entries[0].Target)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := tlog.ParseProof(blob)
	if err != nil {
		t.Fatal(err)
	}
	size, cpRoot, _, _, err := f.r.readLogCheckpoint(mustPolicy(t, f.r))
	if err != nil {
		t.Fatal(err)
	}
	var incl [][]byte
	for _, h := range lp.Inclusion {
		incl = append(incl, h[:])
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, lp.Index, size, rfc6962.DefaultHasher.HashLeaf(lp.Entry), incl, cpRoot); err != nil {
		t.Errorf("inclusion proof: %v", err)
	}
	hist, _ = f.r.LogHistory()
	if len(lp.Consistency) != 1 || lp.Consistency[0].Size != hist[0].Size {
		t.Fatalf("consistency proofs %+v, want one from size %d", lp.Consistency, hist[0].Size)
	}
	var cons [][]byte
	for _, h := range lp.Consistency[0].Hashes {
		cons = append(cons, h[:])
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, hist[0].Size, size, cons, hist[0].Root, cpRoot); err != nil {
		t.Errorf("consistency proof from size %d: %v", hist[0].Size, err)
	}
}

func mustPolicy(t testing.TB, r *Repo) tlog.Policy {
	t.Helper()
	root, err := r.PublishedRoot()
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := RootPolicy(root)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnablingTheLogLogsPublishedReleases(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "1.0.0", CompressNone, f.product[0], f.product[1])
	f.publish(t)
	f.enableLog(t, nil, 0)
	entries := logEntries(t, f.r)
	if len(entries) != 1 || entries[0].Version != "1.0.0" {
		t.Fatalf("log = %+v, want the release published before the log was enabled", entries)
	}
}

func TestPublishNeedsThePolicysLogKey(t *testing.T) {
	f := newFixture(t)
	f.enableLog(t, nil, 0)
	f.addRelease(t, "1.1.0", CompressNone, f.product[0], f.product[1])
	before, err := f.r.PublishedTimestamp()
	if err != nil {
		t.Fatal(err)
	}
	f.r.opts.LogSigner = nil
	if _, err := f.r.Publish(f.snapshot, f.tstamp); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("publish without a log key: %v, want ErrInvalidOptions", err)
	}
	f.r.opts.LogSigner = genKey(t, keys.Ed25519)
	if _, err := f.r.Publish(f.snapshot, f.tstamp); !errors.Is(err, ErrUnauthorizedKey) {
		t.Errorf("publish with another log key: %v, want ErrUnauthorizedKey", err)
	}
	after, err := f.r.PublishedTimestamp()
	if err != nil {
		t.Fatal(err)
	}
	if after.Signed.Version != before.Signed.Version {
		t.Errorf("a refused publish wrote timestamp version %d", after.Signed.Version)
	}
	// With the log kept by another system, publish needs no log key and
	// leaves the log alone.
	n := len(logEntries(t, f.r))
	f.r.opts.LogSigner, f.r.opts.ExternalLog = nil, true
	res, err := f.r.Publish(f.snapshot, f.tstamp)
	if err != nil {
		t.Fatalf("publish with an external log: %v", err)
	}
	if res.Log != nil || len(logEntries(t, f.r)) != n {
		t.Errorf("publish with an external log appended: %+v", res.Log)
	}
}

func TestInitWithLogAndDefaultOrigin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	rootKey, logKey := genKey(t, keys.Ed25519), genKey(t, keys.Ed25519)
	keyPath := filepath.Join(t.TempDir(), "log.pem")
	r, err := Init(dir, InitOptions{RootKeys: []crypto.PublicKey{rootKey.Public()}, RootSigners: []crypto.Signer{rootKey},
		Targets: genKey(t, keys.Ed25519), Snapshot: genKey(t, keys.Ed25519), Timestamp: genKey(t, keys.Ed25519),
		Log: &LogOptions{Key: logKey.Public(), KeyPath: keyPath}})
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.PublishedRoot()
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := RootPolicy(root)
	if err != nil || !ok {
		t.Fatalf("root version 1 has no policy: %v", err)
	}
	origin, err := logOrigin(root)
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin() != origin || !strings.HasPrefix(origin, "airlock.log/") || len(origin) != len("airlock.log/")+16 {
		t.Errorf("origin %q, want %q", p.Origin(), origin)
	}
	_, vkey, err := LogNoteSigner(origin, logKey)
	if err != nil || vkey != p.Log {
		t.Errorf("policy log key %q, want %q (%v)", p.Log, vkey, err)
	}
	if r.Config().LogKey != keyPath || r.Config().LogOrigin != origin {
		t.Errorf("config %+v", r.Config())
	}
	// A log key inside the repository is refused.
	dir2 := filepath.Join(t.TempDir(), "repo2")
	_, err = Init(dir2, InitOptions{RootKeys: []crypto.PublicKey{rootKey.Public()}, RootSigners: []crypto.Signer{rootKey},
		Targets: genKey(t, keys.Ed25519), Snapshot: genKey(t, keys.Ed25519), Timestamp: genKey(t, keys.Ed25519),
		Log: &LogOptions{Key: logKey.Public(), KeyPath: filepath.Join(dir2, "log.pem")}})
	if !errors.Is(err, ErrKeyInsideRepo) {
		t.Errorf("log key inside the repository: %v", err)
	}
}

func TestRotateChangesTheWitnessPolicy(t *testing.T) {
	f := newFixture(t)
	f.enableLog(t, nil, 0)
	w := tlog.Witness{Name: "w1.example", URL: "https://w1.example/"}
	_, vkey, err := note.GenerateKey(rand.Reader, w.Name)
	if err != nil {
		t.Fatal(err)
	}
	if w.Key, err = fnote.VKeyToCosignatureV1(vkey); err != nil {
		t.Fatal(err)
	}
	before, _ := f.r.PublishedRoot()
	pBefore, _, _ := RootPolicy(before)
	if _, err := f.r.Rotate(RotateOptions{Role: "root", OldSigners: f.root[:2], Log: &LogOptions{Witnesses: []tlog.Witness{w}}}); err != nil {
		t.Fatal(err)
	}
	staged, err := f.r.stagedRoot()
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := RootPolicy(staged)
	if err != nil || !ok {
		t.Fatal(err)
	}
	want := tlog.Policy{Log: pBefore.Log, Witnesses: []tlog.Witness{w}, Threshold: 1}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if _, err := f.r.Rotate(RotateOptions{Role: "acme/router-x1", OldSigners: []crypto.Signer{f.targets}, Log: &LogOptions{}}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("policy change in a product rotation: %v", err)
	}
}

// TestPublishIsCosignedByTwoWitnesses runs two real witnesses
// (transparency-dev's omniwitness, C2SP tlog-witness) on 127.0.0.1.
func TestPublishIsCosignedByTwoWitnesses(t *testing.T) {
	f := newFixture(t)
	logKey := genKey(t, keys.Ed25519)
	root1, _, err := loadMD[metadata.RootType](f.r.metaPath("1.root.json"), MaxRootSize)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := logOrigin(root1)
	if err != nil {
		t.Fatal(err)
	}
	_, logVKey, err := LogNoteSigner(origin, logKey)
	if err != nil {
		t.Fatal(err)
	}
	w1 := witnesstest.Start(t, "w1.test", logVKey)
	w2 := witnesstest.Start(t, "w2.test", logVKey)
	ws := []tlog.Witness{{Name: w1.Name, Key: w1.VKey, URL: w1.URL}, {Name: w2.Name, Key: w2.VKey, URL: w2.URL}}
	res, err := f.r.Rotate(RotateOptions{Role: "root", OldSigners: f.root[:2], Log: &LogOptions{Key: logKey.Public(), Witnesses: ws, Threshold: 2}})
	if err != nil || res.Missing != "" {
		t.Fatal(err, res)
	}
	f.r.opts.LogSigner = logKey
	f.r.opts.LogTimeout = 30 * time.Second
	f.addRelease(t, "1.1.0", CompressNone, f.product[0], f.product[1])
	start := time.Now()
	pub := f.publish(t)
	t.Logf("publish of one release, cosigned by 2 witnesses on 127.0.0.1: %v", time.Since(start))
	if pub.Log == nil || len(pub.Log.Appended) != 1 {
		t.Fatalf("publish logged %+v", pub.Log)
	}
	var vs []note.Verifier
	for _, w := range ws {
		v, err := fnote.NewVerifierForCosignatureV1(w.Key)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	lv, _ := note.NewVerifier(logVKey)
	n, err := note.Open(pub.Log.Checkpoint, note.VerifierList(append(vs, lv)...))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range n.Sigs {
		names[s.Name] = true
	}
	if !names["w1.test"] || !names["w2.test"] || !names[origin] {
		t.Errorf("checkpoint signed by %v, want the log and both witnesses", names)
	}
	if !bytes.HasPrefix([]byte(n.Text), []byte(origin+"\n1\n")) {
		t.Errorf("checkpoint body %q", n.Text)
	}

	// With one witness down, 2 of 2 cannot be met: the publish fails and
	// writes no timestamp.
	w2.Kill()
	f.r.opts.LogTimeout = 5 * time.Second
	f.addRelease(t, "1.2.0", CompressNone, f.product[0], f.product[1])
	before, _ := f.r.PublishedTimestamp()
	if _, err := f.r.Publish(f.snapshot, f.tstamp); !errors.Is(err, ErrLog) {
		t.Errorf("publish with a witness down: %v, want ErrLog", err)
	}
	if after, _ := f.r.PublishedTimestamp(); after.Signed.Version != before.Signed.Version {
		t.Errorf("a failed publish wrote timestamp version %d", after.Signed.Version)
	}
}

func TestParseHistoryIsStrict(t *testing.T) {
	good := "1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n3 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
	if h, err := ParseHistory([]byte(good)); err != nil || len(h) != 2 {
		t.Fatalf("ParseHistory(good) = %v, %v", h, err)
	}
	for _, bad := range []string{
		"1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",    // no newline
		"01 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", // leading zero
		"1 47DEQpj8HBSa\n", // short root
		"3 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", // shrinks
		"1  47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",                                                // two spaces
	} {
		if _, err := ParseHistory([]byte(bad)); err == nil {
			t.Errorf("ParseHistory(%q) accepted", bad)
		}
	}
}

func FuzzParseHistory(f *testing.F) {
	f.Add([]byte("1 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHistory(data)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, l := range h {
			b.WriteString(historyLine(l.Size, l.Root))
		}
		if b.String() != string(data) {
			t.Errorf("ParseHistory accepted %q, which re-encodes as %q", data, b.String())
		}
	})
}
