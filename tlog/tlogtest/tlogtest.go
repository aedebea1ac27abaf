// Package tlogtest runs a real transparency log for tests: a
// transparency-dev/tessera log with its POSIX driver in a directory (a
// repository's public/log), signed by an Ed25519 note key, with
// checkpoints cosigned by cosignature/v1 witness keys, and Airlock's
// release index and history files beside it, as a vendor's publish
// writes them.
package tlogtest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/tlog"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// Witness is a cosignature/v1 key pair.
type Witness struct {
	Name   string
	Signer note.Signer
	VKey   string
}

// NewWitness makes a witness key named name.
func NewWitness(t testing.TB, name string) *Witness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return &Witness{Name: name, Signer: s, VKey: cv}
}

// Log is a tessera log in Dir.
type Log struct {
	t      testing.TB
	Dir    string
	Origin string
	signer note.Signer
	VKey   string // the log's note verifier key
	// Cosigners cosign every checkpoint the log writes from now on.
	Cosigners []*Witness
}

// New makes an empty log in dir, named origin.
func New(t testing.TB, dir, origin string, cosigners ...*Witness) *Log {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &Log{t: t, Dir: dir, Origin: origin, signer: s, VKey: vkey, Cosigners: cosigners}
}

// Fork returns a log in dir with l's key (the same origin): what a log
// operator who shows different views to different parties runs.
func (l *Log) Fork(dir string) *Log {
	f := *l
	f.Dir = dir
	f.Cosigners = slices.Clone(l.Cosigners)
	return &f
}

// Policy returns the policy of l and witnesses, threshold k.
func (l *Log) Policy(k int, witnesses ...*Witness) tlog.Policy {
	p := tlog.Policy{Log: l.VKey, Witnesses: []tlog.Witness{}, Threshold: k}
	for _, w := range witnesses {
		p.Witnesses = append(p.Witnesses, tlog.Witness{Name: w.Name, Key: w.VKey})
	}
	return p
}

// Append appends entries (each integrated in order), writes a checkpoint
// covering them cosigned by l.Cosigners, and returns their indices.
func (l *Log) Append(entries ...[]byte) []uint64 {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	drv, err := posix.New(ctx, posix.Config{Path: l.Dir})
	if err != nil {
		l.t.Fatal(err)
	}
	app, shutdown, reader, err := tessera.NewAppender(ctx, drv, tessera.NewAppendOptions().
		WithCheckpointSigner(l.signer).WithBatching(uint(max(1, min(len(entries), 1024))), 10*time.Millisecond).
		WithCheckpointInterval(100*time.Millisecond).WithCheckpointRepublishInterval(time.Hour))
	if err != nil {
		l.t.Fatal(err)
	}
	aw := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 20*time.Millisecond)
	futures := make([]tessera.IndexFuture, len(entries))
	for i, e := range entries {
		futures[i] = app.Add(ctx, tessera.NewEntry(e))
	}
	var idx []uint64
	for _, f := range futures {
		i, _, err := aw.Await(ctx, f)
		if err != nil {
			l.t.Fatal(err)
		}
		idx = append(idx, i.Index)
	}
	if err := shutdown(ctx); err != nil {
		l.t.Fatal(err)
	}
	l.Cosign()
	return idx
}

// Checkpoint returns the log's checkpoint file.
func (l *Log) Checkpoint() []byte {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir, "checkpoint"))
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// Cosign re-signs the current checkpoint with the log key and
// l.Cosigners, and records it in the history file.
func (l *Log) Cosign() {
	l.t.Helper()
	v, err := note.NewVerifier(l.VKey)
	if err != nil {
		l.t.Fatal(err)
	}
	n, err := note.Open(l.Checkpoint(), note.VerifierList(v))
	if err != nil {
		l.t.Fatal(err)
	}
	l.WriteCheckpoint(l.Sign(n.Text, l.Cosigners...))
	lines := strings.Split(n.Text, "\n")
	f, err := os.OpenFile(filepath.Join(l.Dir, "history"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", lines[1], lines[2])
}

// Sign signs a checkpoint body with the log key and the witnesses.
func (l *Log) Sign(body string, witnesses ...*Witness) []byte {
	l.t.Helper()
	signers := []note.Signer{l.signer}
	for _, w := range witnesses {
		signers = append(signers, w.Signer)
	}
	b, err := note.Sign(&note.Note{Text: body}, signers...)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// WriteCheckpoint replaces the served checkpoint.
func (l *Log) WriteCheckpoint(b []byte) {
	l.t.Helper()
	if err := os.WriteFile(filepath.Join(l.Dir, "checkpoint"), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// Index records the index of the entry for a target digest
// (releases/<digest>), as a publish does.
func (l *Log) Index(digest string, index uint64) {
	l.t.Helper()
	if err := os.MkdirAll(filepath.Join(l.Dir, "releases"), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "releases", digest), tlog.MarshalIndex(index), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// ReleaseEntry returns the log entry of target path tp as the signed role
// metadata roleData lists it (the role named role).
func ReleaseEntry(t testing.TB, roleData []byte, role, tp string) tlog.Entry {
	t.Helper()
	var m struct {
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
		Signed struct {
			Version int64                      `json:"version"`
			Targets map[string]json.RawMessage `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(roleData, &m); err != nil {
		t.Fatal(err)
	}
	info, ok := m.Signed.Targets[tp]
	if !ok {
		t.Fatalf("role %s does not list %s", role, tp)
	}
	d, err := tlog.TargetDigest(info)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Custom struct {
			Airlock struct {
				Product    string `json:"product"`
				Version    string `json:"version"`
				Provenance struct {
					SHA256 string `json:"sha256"`
				} `json:"provenance"`
			} `json:"airlock"`
		} `json:"custom"`
	}
	if err := json.Unmarshal(info, &c); err != nil {
		t.Fatal(err)
	}
	e := tlog.Entry{Type: tlog.EntryType, Product: c.Custom.Airlock.Product, Version: c.Custom.Airlock.Version,
		Target: tp, TargetSHA256: d, ProvenanceSHA256: c.Custom.Airlock.Provenance.SHA256,
		Role: role, RoleVersion: m.Signed.Version, Logged: time.Now().UTC().Format(time.RFC3339)}
	for _, s := range m.Signatures {
		e.Signers = append(e.Signers, s.KeyID)
	}
	return e
}

// AddRelease appends the entry of tp (ReleaseEntry) and indexes it.
func (l *Log) AddRelease(roleData []byte, role, tp string) uint64 {
	l.t.Helper()
	e := ReleaseEntry(l.t, roleData, role, tp)
	b, err := e.Marshal()
	if err != nil {
		l.t.Fatal(err)
	}
	i := l.Append(b)[0]
	l.Index(e.TargetSHA256, i)
	return i
}

// FetchLog implements tlog.Fetcher over l.Dir.
func (l *Log) FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error) {
	if !fs.ValidPath(path) {
		return nil, fmt.Errorf("log path %q: %w", path, fs.ErrInvalid)
	}
	b, err := os.ReadFile(filepath.Join(l.Dir, filepath.FromSlash(path)))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxLength {
		return nil, fmt.Errorf("log file %s: %d bytes, more than %d", path, len(b), maxLength)
	}
	return b, nil
}
