package repo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/tlog"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/transparency-dev/tessera"
	tlayout "github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// The transparency log lives in the repository's public files (so any
// static host serves it, as C2SP tlog-tiles): tessera's POSIX layout under
// LogDir (checkpoint, tile/<L>/<N>, tile/entries/<N>), plus two files of
// ours: releases/<target digest> ({"index":N}, where each release's entry
// is) and history (one "<size> <base64 root>" line per checkpoint a publish
// wrote, for consistency proofs).
const (
	LogDir         = "log" // under public/
	LogReleasesDir = "releases"
	LogHistoryFile = "history"
	LogCheckpoint  = "checkpoint"
)

// Limits and defaults of the log writer.
const (
	// DefaultLogTimeout bounds how long Publish waits for its entries to be
	// integrated and for a checkpoint covering them (witnessed, when the
	// policy lists witnesses) to be published.
	DefaultLogTimeout = 60 * time.Second
	// DefaultWitnessTimeout bounds one round of witness requests.
	DefaultWitnessTimeout = 10 * time.Second
	// MaxHistorySize bounds log/history (about 2.5 million checkpoints).
	MaxHistorySize = 128 << 20
)

// ErrLog is wrapped by the errors of the transparency log.
var ErrLog = errors.New("transparency log")

// logOrigin returns the default checkpoint origin of a repository whose root
// version 1 is root1: "airlock.log/" and the first 16 hex digits of the
// SHA-256 of the canonical JSON of its signed part without the
// transparency field (root version 1 may carry the policy that names the
// origin, so the field cannot be part of what names it).
func logOrigin(root1 *metadata.Metadata[metadata.RootType]) (string, error) {
	raw, err := json.Marshal(root1.Signed)
	if err != nil {
		return "", err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	delete(m, tlog.PolicyField)
	c, err := canonjson.Marshal(m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return fmt.Sprintf("airlock.log/%x", sum[:8]), nil
}

// DefaultLogOrigin returns the default log name of a repository whose root
// version 1 is root1 (the bytes of 1.root.json).
func DefaultLogOrigin(root1 []byte) (string, error) {
	md, err := parseMD[metadata.RootType](root1)
	if err != nil {
		return "", err
	}
	return logOrigin(md)
}

// LogNoteSigner turns an Ed25519 crypto.Signer (a key file or a PKCS#11
// key) into a note signer named origin, and returns its note verifier key
// ("<origin>+<hash>+<base64(0x01||pub)>"), what the policy carries.
func LogNoteSigner(origin string, s crypto.Signer) (note.Signer, string, error) {
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok {
		return nil, "", fmt.Errorf("%w: the log key must be Ed25519, not %T", ErrInvalidOptions, s.Public())
	}
	if origin == "" || strings.ContainsAny(origin, "+ \n") || len(origin) > 255 {
		return nil, "", fmt.Errorf("%w: log origin %q: empty, too long, or holds '+', a space or a newline", ErrInvalidOptions, origin)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", err
	}
	return &noteSigner{name: origin, hash: v.KeyHash(), s: s}, vkey, nil
}

type noteSigner struct {
	name string
	hash uint32
	s    crypto.Signer
}

func (n *noteSigner) Name() string    { return n.name }
func (n *noteSigner) KeyHash() uint32 { return n.hash }
func (n *noteSigner) Sign(msg []byte) ([]byte, error) {
	return n.s.Sign(rand.Reader, msg, crypto.Hash(0))
}

// RootPolicy returns the transparency policy of a root, or ok false when the
// root carries none (transparency not required).
func RootPolicy(root *metadata.Metadata[metadata.RootType]) (tlog.Policy, bool, error) {
	p, ok, err := tlog.PolicyOf(root.Signed.UnrecognizedFields)
	if err != nil {
		return tlog.Policy{}, false, fmt.Errorf("root version %d: %w", root.Signed.Version, err)
	}
	return p, ok, nil
}

// setRootPolicy puts p into root's signed fields (nil p removes it).
func setRootPolicy(root *metadata.Metadata[metadata.RootType], p *tlog.Policy) error {
	if root.Signed.UnrecognizedFields == nil {
		root.Signed.UnrecognizedFields = map[string]any{}
	}
	if p == nil {
		delete(root.Signed.UnrecognizedFields, tlog.PolicyField)
		return nil
	}
	if err := p.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	// Store the generic JSON form, as a root read back holds it.
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	root.Signed.UnrecognizedFields[tlog.PolicyField] = v
	return nil
}

// logPath returns a path under public/log.
func (r *Repo) logPath(elem ...string) string {
	return r.path(append([]string{PublicDir, LogDir}, elem...)...)
}

// LogIndex returns the log index of the release whose entry digest
// (tlog.TargetDigest of its signed target info) is digest, or ok false.
func (r *Repo) LogIndex(digest string) (uint64, bool, error) {
	if len(digest) != 64 || strings.Trim(digest, "0123456789abcdef") != "" {
		return 0, false, fmt.Errorf("%w: %q is not a target digest", ErrInvalidOptions, digest)
	}
	data, err := readLimited(r.logPath(LogReleasesDir, digest), tlog.MaxIndexSize)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	i, err := tlog.ParseIndex(data)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %s: %w", ErrLog, digest, err)
	}
	return i, true, nil
}

// HistoryLine is one line of log/history: a checkpoint a publish wrote.
type HistoryLine struct {
	Size uint64
	Root []byte
}

// LogHistory returns the lines of log/history, oldest first.
func (r *Repo) LogHistory() ([]HistoryLine, error) {
	data, err := readLimited(r.logPath(LogHistoryFile), MaxHistorySize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseHistory(data)
}

// ParseHistory parses log/history strictly: lines "<size> <base64 root>",
// sizes strictly increasing, roots of 32 bytes.
func ParseHistory(data []byte) ([]HistoryLine, error) {
	if len(data) > MaxHistorySize {
		return nil, fmt.Errorf("%w: history of %d bytes, more than %d", ErrLog, len(data), MaxHistorySize)
	}
	var out []HistoryLine
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: history does not end with a newline", ErrLog)
	}
	for i, line := range strings.Split(string(data[:len(data)-1]), "\n") {
		s, b, ok := strings.Cut(line, " ")
		size, err := strconv.ParseUint(s, 10, 64)
		if !ok || err != nil || strconv.FormatUint(size, 10) != s {
			return nil, fmt.Errorf("%w: history line %d: malformed size", ErrLog, i+1)
		}
		root, err := base64.StdEncoding.Strict().DecodeString(b)
		if err != nil || len(root) != sha256.Size {
			return nil, fmt.Errorf("%w: history line %d: malformed root hash", ErrLog, i+1)
		}
		if len(out) > 0 && size <= out[len(out)-1].Size {
			return nil, fmt.Errorf("%w: history line %d: size %d does not grow", ErrLog, i+1, size)
		}
		out = append(out, HistoryLine{Size: size, Root: root})
	}
	return out, nil
}

// logEntries returns the entries of the releases in md (a product role
// about to be published) that are not logged yet, keyed by entry digest.
// Signers are the key IDs of md's valid signatures by the role's keys.
func (r *Repo) logEntries(role string, md *metadata.Metadata[metadata.TargetsType], data []byte, rk roleKeys, now time.Time) (map[string]tlog.Entry, error) {
	var raw struct {
		Signed struct {
			Targets map[string]json.RawMessage `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	sigs, err := validSignatures(md, rk)
	if err != nil {
		return nil, err
	}
	var signers []string
	for _, s := range sigs {
		if !slices.Contains(signers, s.KeyID) {
			signers = append(signers, s.KeyID)
		}
	}
	slices.Sort(signers)
	out := map[string]tlog.Entry{}
	for tp, info := range raw.Signed.Targets {
		digest, err := tlog.TargetDigest(info)
		if err != nil {
			return nil, err
		}
		if _, ok, err := r.LogIndex(digest); err != nil {
			return nil, err
		} else if ok {
			continue
		}
		p, v, _, err := release.ParseTargetPath(tp)
		if err != nil {
			return nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
		}
		prov, err := provenanceDigest(info)
		if err != nil {
			return nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
		}
		out[digest] = tlog.Entry{Type: tlog.EntryType, Product: p.String(), Version: v.String(), Target: tp,
			TargetSHA256: digest, ProvenanceSHA256: prov, Role: role, RoleVersion: md.Signed.Version,
			Signers: signers, Logged: now.UTC().Format(time.RFC3339)}
	}
	return out, nil
}

// provenanceDigest returns custom.airlock.provenance.sha256 of a target's
// file info, or "" when the release has no provenance.
func provenanceDigest(info []byte) (string, error) {
	var v struct {
		Custom struct {
			Airlock struct {
				Provenance *struct {
					SHA256 string `json:"sha256"`
				} `json:"provenance"`
			} `json:"airlock"`
		} `json:"custom"`
	}
	if err := json.Unmarshal(info, &v); err != nil {
		return "", err
	}
	if v.Custom.Airlock.Provenance == nil {
		return "", nil
	}
	return v.Custom.Airlock.Provenance.SHA256, nil
}

// LogResult says what a publish appended to the log.
type LogResult struct {
	// Appended maps each appended entry's target path to its index.
	Appended map[string]uint64
	// Checkpoint is the checkpoint published (with cosignatures).
	Checkpoint []byte
}

// appendLog appends entries (keyed by digest) to the log with the policy of
// root, waits for a checkpoint that covers them, then writes their index
// files and the history line. It first brings the index files and history
// up to date with the log (after a publish that crashed in between).
func (r *Repo) appendLog(ctx context.Context, policy tlog.Policy, entries map[string]tlog.Entry) (*LogResult, error) {
	signer, err := r.logSigner(policy)
	if err != nil {
		return nil, err
	}
	if err := r.reconcileLog(policy); err != nil {
		return nil, err
	}
	res := &LogResult{Appended: map[string]uint64{}}
	if len(entries) == 0 {
		return res, nil
	}
	timeout := r.opts.LogTimeout
	if timeout == 0 {
		timeout = DefaultLogTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := r.opts.LogHTTPClient
	if client == nil {
		client = &http.Client{Timeout: DefaultWitnessTimeout}
	}
	drv, err := posix.New(ctx, posix.Config{Path: r.logPath(), HTTPClient: client})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLog, err)
	}
	wg, err := witnessGroup(policy)
	if err != nil {
		return nil, err
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(uint(len(entries)), 50*time.Millisecond).
		WithCheckpointInterval(100*time.Millisecond).
		WithCheckpointRepublishInterval(0).
		WithGarbageCollectionInterval(0).
		WithShutdownTimeout(timeout).
		WithWitnesses(wg, &tessera.WitnessOptions{Timeout: DefaultWitnessTimeout})
	appender, shutdown, reader, err := tessera.NewAppender(ctx, drv, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: failed to open: %w", ErrLog, err)
	}
	digests := make([]string, 0, len(entries))
	for d := range entries {
		digests = append(digests, d)
	}
	slices.SortFunc(digests, func(a, b string) int { return strings.Compare(entries[a].Target, entries[b].Target) })
	futures := make([]tessera.IndexFuture, len(digests))
	for i, d := range digests {
		leaf, err := entries[d].Marshal()
		if err != nil {
			return nil, err
		}
		futures[i] = appender.Add(ctx, tessera.NewEntry(leaf))
	}
	idx := map[string]uint64{}
	for i, f := range futures {
		n, err := f()
		if err != nil {
			return nil, fmt.Errorf("%w: failed to append %s: %w", ErrLog, entries[digests[i]].Target, err)
		}
		idx[digests[i]] = n.Index
	}
	if err := shutdown(ctx); err != nil {
		return nil, fmt.Errorf("%w: no checkpoint covering the new entries was published within %v: %w%s", ErrLog, timeout, err, witnessHint(policy))
	}
	cp, err := reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLog, err)
	}
	cancel()
	if err := r.reconcileLog(policy); err != nil {
		return nil, err
	}
	for _, d := range digests {
		res.Appended[entries[d].Target] = idx[d]
	}
	res.Checkpoint = cp
	return res, nil
}

// witnessHint names the witnesses a failed publish waited for.
func witnessHint(p tlog.Policy) string {
	if len(p.Witnesses) == 0 {
		return ""
	}
	var urls []string
	for _, w := range p.Witnesses {
		urls = append(urls, w.URL)
	}
	return fmt.Sprintf(" (the policy needs %d cosignatures of %s: are they reachable, and do they know the log?)", p.Threshold, strings.Join(urls, ", "))
}

// logSigner returns the log's note signer, checked against the policy.
func (r *Repo) logSigner(policy tlog.Policy) (note.Signer, error) {
	if r.opts.LogSigner == nil {
		return nil, fmt.Errorf("%w: the root requires a transparency log and no log key was given (configure log_key or pass --log-key)", ErrInvalidOptions)
	}
	ns, vkey, err := LogNoteSigner(policy.Origin(), r.opts.LogSigner)
	if err != nil {
		return nil, err
	}
	if vkey != policy.Log {
		return nil, fmt.Errorf("%w: the log key %s is not the key of the root's transparency policy (%s)", ErrUnauthorizedKey, vkey, policy.Log)
	}
	return ns, nil
}

func witnessGroup(policy tlog.Policy) (tessera.WitnessGroup, error) {
	if len(policy.Witnesses) == 0 {
		return tessera.WitnessGroup{}, nil
	}
	g := tessera.WitnessGroup{N: policy.Threshold}
	for _, w := range policy.Witnesses {
		if w.URL == "" {
			return tessera.WitnessGroup{}, fmt.Errorf("%w: witness %q has no URL to send checkpoints to", ErrInvalidOptions, w.Name)
		}
		u, err := url.Parse(w.URL)
		if err != nil {
			return tessera.WitnessGroup{}, fmt.Errorf("%w: witness %q: %w", ErrInvalidOptions, w.Name, err)
		}
		tw, err := tessera.NewWitness(w.Key, u)
		if err != nil {
			return tessera.WitnessGroup{}, fmt.Errorf("%w: witness %q: %w", ErrInvalidOptions, w.Name, err)
		}
		g.Components = append(g.Components, tw)
	}
	return g, nil
}

// readLogCheckpoint reads and verifies the published checkpoint: the log's
// signature; cosignatures are not checked here (tessera checked them before
// publishing it). ok is false when the log has none yet.
func (r *Repo) readLogCheckpoint(policy tlog.Policy) (size uint64, root []byte, raw []byte, ok bool, err error) {
	raw, err = readLimited(r.logPath(LogCheckpoint), tlog.MaxCheckpointSize)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil, false, nil
	}
	if err != nil {
		return 0, nil, nil, false, err
	}
	c, err := tlog.VerifyLogSignature(raw, policy)
	if err != nil {
		return 0, nil, nil, false, fmt.Errorf("%w: the published checkpoint: %w", ErrLog, err)
	}
	size, root = c.Size, c.Hash[:]
	return size, root, raw, true, nil
}

// reconcileLog writes the index files of the entries between the last
// history line and the published checkpoint, then the checkpoint's history
// line: after it, every entry the checkpoint covers has its index file.
func (r *Repo) reconcileLog(policy tlog.Policy) error {
	size, root, _, ok, err := r.readLogCheckpoint(policy)
	if err != nil || !ok || size == 0 {
		return err
	}
	hist, err := r.LogHistory()
	if err != nil {
		return err
	}
	var from uint64
	if len(hist) > 0 {
		last := hist[len(hist)-1]
		switch {
		case last.Size == size && bytes.Equal(last.Root, root):
			return nil
		case last.Size >= size:
			return fmt.Errorf("%w: the published checkpoint (size %d) is not newer than the last history line (size %d): the log directory was rolled back or replaced", ErrLog, size, last.Size)
		}
		from = last.Size
	}
	err = readEntries(r.logPath(), from, size, func(i uint64, leaf []byte) error {
		e, err := tlog.ParseEntry(leaf)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrLog, i, err)
		}
		if _, ok, err := r.LogIndex(e.TargetSHA256); err != nil || ok {
			return err // a duplicate keeps its first index
		}
		return writeFile(r.logPath(LogReleasesDir, e.TargetSHA256), tlog.MarshalIndex(i))
	})
	if err != nil {
		return err
	}
	data, err := readLimited(r.logPath(LogHistoryFile), MaxHistorySize)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return writeFile(r.logPath(LogHistoryFile), append(data, historyLine(size, root)...))
}

// historyLine formats one line of log/history.
func historyLine(size uint64, root []byte) string {
	return fmt.Sprintf("%d %s\n", size, base64.StdEncoding.EncodeToString(root))
}

// readEntries calls fn for each leaf in [from, to) of the POSIX log at dir,
// reading its entry bundles (C2SP tlog-tiles).
func readEntries(dir string, from, to uint64, fn func(uint64, []byte) error) error {
	const width = 256
	for i := from; i < to; {
		bundle := i / width
		n := uint64(width)
		if end := (bundle + 1) * width; end > to {
			n = to - bundle*width
		}
		p := tlayout.EntriesPath(bundle, uint8(n%width))
		data, err := readLimited(filepath.Join(dir, filepath.FromSlash(p)), tlog.MaxEntryBundleSize)
		if errors.Is(err, os.ErrNotExist) && n < width {
			// The partial bundle was collected: the full one holds it.
			p = tlayout.EntriesPath(bundle, 0)
			data, err = readLimited(filepath.Join(dir, filepath.FromSlash(p)), tlog.MaxEntryBundleSize)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrLog, err)
		}
		leaves, err := tlog.ParseEntryBundle(data)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrLog, p, err)
		}
		if uint64(len(leaves)) < n {
			return fmt.Errorf("%w: %s holds %d entries, want %d", ErrLog, p, len(leaves), n)
		}
		for ; i < bundle*width+n; i++ {
			if err := fn(i, leaves[i-bundle*width]); err != nil {
				return err
			}
		}
	}
	return nil
}

// LogOptions configure the transparency log of a repository: the policy
// written into signed root metadata (tlog.PolicyField) and the key
// configuration Publish uses.
type LogOptions struct {
	// Key is the log's Ed25519 public key. In a rotation, nil keeps the
	// current policy's log key.
	Key crypto.PublicKey
	// KeyPath is where Publish finds the private key (a path outside the
	// repository or a pkcs11: URI), recorded as Config.LogKey; "" keeps
	// the configured one.
	KeyPath string
	// Origin is the log's name; "" means the configured one, else
	// "airlock.log/" and 16 hex digits of root version 1 (logOrigin).
	Origin string
	// Witnesses and Threshold: k of these witnesses must cosign every
	// checkpoint devices accept. In a rotation, no witnesses and threshold
	// 0 keep the current ones unless NoWitnesses is set.
	Witnesses   []tlog.Witness
	Threshold   int
	NoWitnesses bool
}

// policyFor builds the policy LogOptions describe, starting from the
// current one (cur, or nil).
func (r *Repo) policyFor(o LogOptions, cur *tlog.Policy, root1 *metadata.Metadata[metadata.RootType]) (tlog.Policy, error) {
	var p tlog.Policy
	if cur != nil {
		p = *cur
	}
	origin := o.Origin
	if origin == "" {
		origin = r.cfg.LogOrigin
	}
	if origin == "" && cur != nil {
		origin = cur.Origin()
	}
	if origin == "" {
		var err error
		if origin, err = logOrigin(root1); err != nil {
			return tlog.Policy{}, err
		}
	}
	if o.Key != nil {
		pub, ok := o.Key.(ed25519.PublicKey)
		if !ok {
			return tlog.Policy{}, fmt.Errorf("%w: the log key must be Ed25519, not %T", ErrInvalidOptions, o.Key)
		}
		vkey, err := note.NewEd25519VerifierKey(origin, pub)
		if err != nil {
			return tlog.Policy{}, fmt.Errorf("%w: log key: %w", ErrInvalidOptions, err)
		}
		p.Log = vkey
	} else if cur == nil {
		return tlog.Policy{}, fmt.Errorf("%w: a log key is required to enable the transparency log", ErrInvalidOptions)
	} else if o.Origin != "" && o.Origin != cur.Origin() {
		return tlog.Policy{}, fmt.Errorf("%w: renaming the log (origin %q) needs its key again", ErrInvalidOptions, o.Origin)
	}
	switch {
	case o.NoWitnesses:
		p.Witnesses, p.Threshold = nil, 0
	case len(o.Witnesses) > 0:
		p.Witnesses = slices.Clone(o.Witnesses)
		p.Threshold = o.Threshold
		if p.Threshold == 0 {
			p.Threshold = len(p.Witnesses)
		}
	case o.Threshold != 0:
		p.Threshold = o.Threshold
	}
	if err := p.Check(); err != nil {
		return tlog.Policy{}, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return p, nil
}

// applyLogConfig records the log key path and origin in the configuration.
func (r *Repo) applyLogConfig(o LogOptions, p tlog.Policy) error {
	if o.KeyPath != "" {
		if err := CheckKeyPath(r.dir, o.KeyPath); err != nil {
			return err
		}
		if !strings.HasPrefix(o.KeyPath, "pkcs11:") {
			abs, err := filepath.Abs(o.KeyPath)
			if err != nil {
				return err
			}
			o.KeyPath = abs
		}
		r.cfg.LogKey = o.KeyPath
	}
	r.cfg.LogOrigin = p.Origin()
	return nil
}
