package audit

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/airlockfw/airlock/keys"
	"github.com/transparency-dev/merkle/compact"
)

// DefaultCheckpointEvery is how many entries Append writes between signed
// checkpoints when Options.CheckpointEvery is zero.
const DefaultCheckpointEvery = 100

// Options configures Open. The zero value is ready to use.
type Options struct {
	// CheckpointEvery: Append signs a checkpoint after every this many
	// entries. Zero means DefaultCheckpointEvery; negative means only on
	// Checkpoint and Close.
	CheckpointEvery int
	// Origin names the log in its checkpoints and is the signed-note key name.
	// Empty means the origin of the existing checkpoints, or DefaultOrigin.
	Origin string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Recorder is what code that emits audit events needs; *Log implements it.
// Depend on it to keep the log optional in tests and tools.
type Recorder interface {
	Append(ctx context.Context, e Entry) (seq uint64, err error)
}

// Discard is a Recorder that records nothing.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Append(ctx context.Context, e Entry) (uint64, error) { return 0, ctx.Err() }

// Log is an open audit log. Its methods are safe for concurrent use; only one
// process may have a log open at a time.
type Log struct {
	dir    string
	every  uint64 // 0: never automatically
	origin string
	now    func() time.Time
	signer *noteSigner

	mu      sync.Mutex
	f       *os.File // audit.log, O_APPEND
	cf      *os.File // checkpoints, O_APPEND
	rng     *compact.Range
	size    uint64
	last    [HashSize]byte
	tail    tail // the newest entries
	logGood int64
	cpGood  int64
	lastCP  uint64
	err     error // sticky: the files are in an unknown state
	closed  bool
}

// Open opens the log in dir, creating dir (0700) and the log if needed, for
// appending with checkpoints signed by signer, an Ed25519 crypto.Signer (a
// file key or an HSM key). It first verifies the whole existing log with the
// signer's public key and refuses to append to a log that does not verify
// (the error matches [ErrTampered]). A torn last line left by a crash is
// moved to audit.log.torn. Open writes the public key to audit-key.pub when
// that file is missing, and refuses a signer that does not match it.
func Open(dir string, signer crypto.Signer, opts Options) (*Log, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: no signer", ErrUnsupportedKey)
	}
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint key must be Ed25519, not %T", ErrUnsupportedKey, signer.Public())
	}
	if opts.Origin != "" && !validOrigin(opts.Origin) {
		return nil, fmt.Errorf("invalid origin %q: it must be printable, without spaces or '+'", opts.Origin)
	}
	l := &Log{dir: dir, now: opts.Now}
	if l.now == nil {
		l.now = time.Now
	}
	switch {
	case opts.CheckpointEvery == 0:
		l.every = DefaultCheckpointEvery
	case opts.CheckpointEvery > 0:
		l.every = uint64(opts.CheckpointEvery)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create audit log directory: %w", err)
	}
	var err error
	if l.f, err = openAppend(filepath.Join(dir, LogFile), 0o600); err != nil {
		return nil, err
	}
	if err := lockFile(l.f); err != nil {
		l.f.Close()
		return nil, err
	}
	if l.cf, err = openAppend(filepath.Join(dir, CheckpointFile), 0o644); err != nil {
		l.f.Close()
		return nil, err
	}
	if err := l.init(pub, opts.Origin, signer); err != nil {
		l.f.Close()
		l.cf.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) init(pub ed25519.PublicKey, origin string, signer crypto.Signer) error {
	pubPath := filepath.Join(l.dir, PublicKeyFile)
	missing, err := checkPublicKey(pubPath, pub)
	if err != nil {
		return err
	}
	st, err := verifyDir(l.dir, pub, VerifyOptions{})
	if err != nil {
		return fmt.Errorf("refusing to append to audit log %s: %w", l.dir, err)
	}
	if missing {
		if err := writePublicKey(pubPath, pub); err != nil {
			return err
		}
	}
	switch {
	case origin == "" && st.origin != "":
		origin = st.origin
	case origin == "":
		origin = DefaultOrigin
	case st.origin != "" && st.origin != origin:
		return fmt.Errorf("audit log %s has origin %q, not %q", l.dir, st.origin, origin)
	}
	l.origin = origin
	if l.signer, err = newNoteSigner(origin, signer); err != nil {
		return err
	}
	if st.report.TornBytes > 0 {
		if err := moveTail(l.f, st.logGood, filepath.Join(l.dir, TornFile)); err != nil {
			return err
		}
	}
	if st.report.TornCheckpointBytes > 0 {
		if err := moveTail(l.cf, st.cpGood, filepath.Join(l.dir, CheckpointFile+".torn")); err != nil {
			return err
		}
	}
	l.rng, l.size, l.last, l.tail = st.rng, st.report.Entries, st.last, st.tail
	l.logGood, l.cpGood, l.lastCP = st.logGood, st.cpGood, st.lastCP
	return nil
}

// openAppend opens path for appending, creating it (and syncing its
// directory) if needed.
func openAppend(path string, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			err = syncDir(filepath.Dir(path))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open %s: %w", filepath.Base(path), err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// moveTail preserves the torn bytes of f after good in torn, then truncates f
// to good.
func moveTail(f *os.File, good int64, torn string) error {
	t, err := os.OpenFile(torn, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("failed to save torn tail: %w", err)
	}
	defer t.Close()
	if _, err := io.Copy(t, io.NewSectionReader(f, good, 1<<62)); err != nil {
		return fmt.Errorf("failed to save torn tail: %w", err)
	}
	if err := t.Sync(); err != nil {
		return fmt.Errorf("failed to save torn tail: %w", err)
	}
	if err := f.Truncate(good); err != nil {
		return fmt.Errorf("failed to drop torn tail: %w", err)
	}
	return f.Sync()
}

// checkPublicKey checks that the public key file at path, if it exists,
// holds pub, and reports whether it is missing.
func checkPublicKey(path string, pub ed25519.PublicKey) (missing bool, err error) {
	have, err := keys.LoadPublic(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to read audit public key: %w", err)
	}
	if h, ok := have.(ed25519.PublicKey); !ok || !h.Equal(pub) {
		return false, fmt.Errorf("%w: %s", ErrKeyMismatch, path)
	}
	return false, nil
}

// writePublicKey creates the public key file (never overwriting).
func writePublicKey(path string, pub ed25519.PublicKey) error {
	data, err := keys.MarshalPublic(pub)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("failed to write audit public key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("failed to write audit public key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("failed to write audit public key: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// Append adds e to the log and returns its seq once the entry is durable
// (written and fsynced). Seq and Prev are assigned; a zero Time becomes the
// current time. Every CheckpointEvery entries Append also signs a
// checkpoint; if only that fails, the entry is durable and Append returns
// its seq with an error saying so.
func (l *Log) Append(ctx context.Context, e Entry) (uint64, error) {
	return l.AppendBatch(ctx, []Entry{e})
}

// AppendBatch adds es (at most MaxAppendBatch) to the log in order, as one
// write and one fsync, and returns the seq of the first once all are
// durable. It validates every entry before writing any. A crash during the
// write can leave a prefix of the batch in the log (whole entries) and a
// torn line. Like Append, it reports a failed checkpoint with the seq.
func (l *Log) AppendBatch(ctx context.Context, es []Entry) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(es) > MaxAppendBatch {
		return 0, fmt.Errorf("%w: %d entries in one batch, more than %d", ErrInvalidEntry, len(es), MaxAppendBatch)
	}
	es = slices.Clone(es)
	now := l.now()
	for i := range es {
		e := &es[i]
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = e.Time.UTC().Round(0)
		if err := e.validate(); err != nil {
			return 0, err
		}
		e.Details = maps.Clone(e.Details)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	first, prev := l.size, l.last
	if len(es) == 0 {
		return first, nil
	}
	var buf []byte
	leaves := make([][]byte, len(es))
	for i := range es {
		es[i].Seq, es[i].Prev = first+uint64(i), prev
		b := es[i].Encode()
		if len(b) > MaxEntrySize {
			return 0, fmt.Errorf("%w: encoded entry is larger than %d bytes", ErrInvalidEntry, MaxEntrySize)
		}
		leaves[i] = hasher.HashLeaf(b)
		copy(prev[:], leaves[i])
		buf = append(append(buf, b...), '\n')
	}
	if err := l.write(l.f, &l.logGood, buf); err != nil {
		return 0, fmt.Errorf("failed to append audit entry: %w", err)
	}
	for i := range es {
		if err := l.rng.Append(leaves[i], nil); err != nil {
			panic("internal error: " + err.Error())
		}
		l.tail.add(es[i])
	}
	l.last = prev
	l.size += uint64(len(es))
	if l.every > 0 && l.size-l.lastCP >= l.every {
		if err := l.checkpoint(); err != nil {
			if len(es) == 1 {
				return first, fmt.Errorf("entry %d appended, but %w", first, err)
			}
			return first, fmt.Errorf("entries %d to %d appended, but %w", first, l.size-1, err)
		}
	}
	return first, nil
}

// MaxAppendBatch bounds the entries of one AppendBatch.
const MaxAppendBatch = 1000

// MaxTail is how many of its newest entries a Log keeps for Tail.
const MaxTail = 256

// tail holds the newest entries (at least MaxTail of them, when there are).
type tail struct{ es []Entry }

func (t *tail) add(e Entry) {
	t.es = append(t.es, e)
	if len(t.es) >= 2*MaxTail {
		t.es = append([]Entry(nil), t.es[len(t.es)-MaxTail:]...)
	}
}

func (t *tail) last(n int) []Entry {
	n = min(n, MaxTail, len(t.es))
	out := make([]Entry, n)
	for i, e := range t.es[len(t.es)-n:] {
		e.Details = maps.Clone(e.Details)
		out[i] = e
	}
	return out
}

// write appends one whole line to f and syncs it. On a failed write it cuts
// f back to *good; if that fails too, or fsync fails, the log becomes
// unusable until reopened (Open recovers from a torn line).
func (l *Log) write(f *os.File, good *int64, line []byte) error {
	if _, err := f.Write(line); err != nil {
		if terr := f.Truncate(*good); terr != nil {
			l.err = fmt.Errorf("audit log file is in an unknown state after a failed write (reopen to recover): %w", err)
		}
		return err
	}
	if err := f.Sync(); err != nil {
		l.err = fmt.Errorf("audit log file is in an unknown state after a failed fsync (reopen to recover): %w", err)
		return err
	}
	*good += int64(len(line))
	return nil
}

func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

// Checkpoint signs and stores a checkpoint of the log as it is now, unless
// the last checkpoint already covers every entry.
func (l *Log) Checkpoint() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return l.checkpoint()
}

func (l *Log) checkpoint() error {
	if l.size == l.lastCP {
		return nil
	}
	c := Checkpoint{Origin: l.origin, Size: l.size, Time: l.now().UTC().Round(0)}
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		panic("internal error: " + err.Error())
	}
	copy(c.Root[:], root)
	msg, err := signCheckpoint(c, l.signer)
	if err != nil {
		return err
	}
	line := base64.StdEncoding.AppendEncode(nil, msg)
	if err := l.write(l.cf, &l.cpGood, append(line, '\n')); err != nil {
		return fmt.Errorf("failed to write checkpoint: %w", err)
	}
	l.lastCP = l.size
	return nil
}

// Tail returns up to n (at most MaxTail) of the newest entries of the log,
// oldest first. A process that copies events into the log from elsewhere
// (the server's audit outbox) reads it to tell, after a crash, which of its
// last events were appended already.
func (l *Log) Tail(n int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tail.last(n)
}

// Size returns the number of entries in the log.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Close signs a final checkpoint covering every entry and closes the log.
// Closing a closed log does nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	var err error
	if l.err == nil {
		err = l.checkpoint()
	}
	l.closed = true
	err = errors.Join(err, l.cf.Close(), l.f.Close())
	return err
}

// GenerateKey creates a new Ed25519 checkpoint signing key at path (PKCS#8
// PEM, mode 0600, never overwriting) and its public key at path.pub.
func GenerateKey(path string) (crypto.Signer, error) {
	priv, err := keys.Generate(keys.Ed25519)
	if err != nil {
		return nil, err
	}
	if err := keys.WritePrivate(path, priv, nil); err != nil {
		return nil, err
	}
	return priv, nil
}

// LoadSigner reads an unencrypted checkpoint signing key written by
// GenerateKey (or `airlock key gen --type ed25519`).
func LoadSigner(path string) (crypto.Signer, error) {
	s, err := keys.LoadPrivate(path, nil)
	if err != nil {
		return nil, err
	}
	if _, ok := s.Public().(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("%w: %s is not an Ed25519 key", ErrUnsupportedKey, path)
	}
	return s, nil
}

// LoadPublic reads a checkpoint public key (a .pub PEM file, or the public
// half of a private key file).
func LoadPublic(path string) (ed25519.PublicKey, error) {
	pub, err := keys.LoadPublic(path)
	if err != nil {
		return nil, err
	}
	ed, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not an Ed25519 key", ErrUnsupportedKey, path)
	}
	return ed, nil
}

// OpenWithKey opens the audit log in dir, signing checkpoints with the
// Ed25519 key at keyPath, which is created (0600, never overwriting) if it
// does not exist yet: what a server or a repository needs to start keeping
// a log.
func OpenWithKey(dir, keyPath string, opts Options) (*Log, error) {
	signer, err := LoadSigner(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		signer, err = GenerateKey(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to load the audit key: %w", err)
	}
	return Open(dir, signer, opts)
}
