// Package logmonitor follows a repository's transparency log for auditors
// and the vendor's security team: `airlock log monitor`.
//
// # Threat model
//
// The log (REPO/public/log, C2SP tlog-tiles) makes every release that
// devices accept public; the monitor is who reads it. It trusts a root
// metadata file (pinned by its operator, or the repository's version 1 on
// first use) and walks the root chain from it (each version signed by a
// threshold of the previous one's root keys and its own), which gives the
// log key and witness policy; it trusts nothing the server says beyond
// that. Each run it:
//
//   - verifies the checkpoint: the log's signature and k of the policy's n
//     witness cosignatures;
//   - checks that the log only grew since the checkpoint it stored last
//     (state directory): a smaller size is a rollback, the same size with
//     another root is a split view; the entries it reads must rebuild the
//     new root from the stored compact range (so they are exactly the
//     entries the checkpoint commits to, and the new tree extends the old);
//   - compares the checkpoint with checkpoints seen elsewhere (a witness's
//     state, a colleague's copy): the same size with another root, or an
//     inconsistent smaller one, is a split view;
//   - explains every new entry: its signers must be keys the product's
//     delegation allowed (in some version of the targets metadata, each
//     verified against the root chain), and, given an expected list, the
//     release must be in it.
//
// What it does not stop: a release signed with stolen release keys that
// are still delegated is "explained" by its signers; the expected list (what
// the vendor's release process produced) is what catches it. The monitor
// only reports: revoking keys and re-signing is up to its operator.
package logmonitor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/tlog"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// Limits of what the monitor reads.
const (
	MaxRootSize     = 512_000
	MaxMetadataSize = 5_000_000
	MaxTileSize     = 256 * 32
	MaxBundleSize   = tlog.MaxEntryBundleSize
	// MaxRootVersions bounds the root chain walked in one run.
	MaxRootVersions = 1024
	// MaxTargetsVersions bounds the targets versions read for delegations.
	MaxTargetsVersions = 100_000
	// MaxExpectedSize bounds an expected-releases file.
	MaxExpectedSize = 16 << 20
	maxStateSize    = 1 << 20
)

// Kinds of problems.
const (
	UnknownSigner = "unknown signer"
	NotExpected   = "not expected"
	SplitView     = "split view"
	Rollback      = "rollback"
	BadEntry      = "malformed entry"
)

// ErrVerify is wrapped when the log or its checkpoint fails verification
// (signature, cosignatures, consistency): nothing about it can be trusted.
var ErrVerify = errors.New("log verification failed")

// Config configures a run.
type Config struct {
	// RepoURL is the repository's base URL: metadata/ and log/ under it
	// (for `airlock serve`, https://HOST/repo/).
	RepoURL string
	// Root is the trusted root metadata to start from; nil means the root
	// stored in StateDir, else the repository's 1.root.json (trust on
	// first use).
	Root []byte
	// StateDir keeps the trusted root and the last verified checkpoint
	// (with its compact range) between runs.
	StateDir string
	// Expected, if not nil, lists the releases the vendor published
	// ("product@version"); any other logged release is a problem.
	Expected map[string]bool
	// Checkpoints are checkpoints seen elsewhere (a witness's state, a
	// copy given by someone else), compared with the repository's.
	Checkpoints [][]byte
	// Client fetches; nil means http.DefaultClient.
	Client *http.Client
}

// Release is one logged release.
type Release struct {
	Index uint64
	Entry tlog.Entry
}

// Problem is something the monitor cannot explain.
type Problem struct {
	Kind string
	// Index is the entry's index, or -1 for problems of the log itself.
	Index int64
	Msg   string
}

func (p Problem) String() string {
	if p.Index < 0 {
		return p.Kind + ": " + p.Msg
	}
	return fmt.Sprintf("%s: entry %d: %s", p.Kind, p.Index, p.Msg)
}

// Report is the result of a run.
type Report struct {
	// Origin, Size and Root describe the verified checkpoint; PrevSize is
	// the size of the stored one (0 on the first run).
	Origin         string
	Size, PrevSize uint64
	Root           []byte
	// Witnesses names the witnesses whose cosignatures verified.
	Witnesses []string
	// Releases are the entries read in this run (from PrevSize).
	Releases []Release
	Problems []Problem
	// Saved is true when the new checkpoint became the stored state (only
	// when every entry was explained).
	Saved bool
}

// state is what StateDir holds: state.json and root.json.
type state struct {
	Checkpoint string   `json:"checkpoint"`
	Size       uint64   `json:"size"`
	Root       string   `json:"root"`
	Range      []string `json:"range"`
}

type monitor struct {
	cfg  Config
	base *url.URL
	c    *http.Client
}

// Run does one pass: see the package documentation. A returned error means
// the log could not be read or verified (ErrVerify); problems with entries
// are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	base, err := url.Parse(cfg.RepoURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("repository URL %q is not an http(s) URL", cfg.RepoURL)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	if cfg.StateDir == "" {
		return nil, errors.New("a state directory is required")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	m := &monitor{cfg: cfg, base: base, c: cfg.Client}
	if m.c == nil {
		m.c = http.DefaultClient
	}
	return m.run(ctx)
}

func (m *monitor) run(ctx context.Context) (*Report, error) {
	roots, err := m.rootChain(ctx)
	if err != nil {
		return nil, err
	}
	latest := roots[len(roots)-1]
	policy, ok, err := tlog.PolicyOf(latest.Signed.UnrecognizedFields)
	if err != nil {
		return nil, fmt.Errorf("root version %d: %w", latest.Signed.Version, err)
	}
	if !ok {
		return nil, fmt.Errorf("root version %d has no transparency policy: the repository keeps no log", latest.Signed.Version)
	}
	cpRaw, err := m.get(ctx, "log/"+layout.CheckpointPath, tlog.MaxCheckpointSize)
	if err != nil {
		return nil, err
	}
	size, root, witnesses, err := VerifyCheckpoint(cpRaw, policy)
	if err != nil {
		return nil, err
	}
	rep := &Report{Origin: policy.Origin(), Size: size, Root: root, Witnesses: witnesses}

	st, err := m.loadState()
	if err != nil {
		return nil, err
	}
	rf := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren})
	rng := rf.NewEmptyRange(0)
	if st != nil {
		rep.PrevSize = st.Size
		sroot, _ := base64.StdEncoding.DecodeString(st.Root)
		switch {
		case size < st.Size:
			rep.Problems = append(rep.Problems, Problem{Rollback, -1, fmt.Sprintf("the repository's checkpoint (size %d) is older than the one verified before (size %d)", size, st.Size)})
			return rep, nil
		case size == st.Size && !bytes.Equal(root, sroot):
			rep.Problems = append(rep.Problems, Problem{SplitView, -1, fmt.Sprintf("two checkpoints of size %d with different roots: %s (repository) and %s (verified before)", size, b64(root), st.Root)})
			return rep, nil
		}
		var hashes [][]byte
		for _, h := range st.Range {
			b, err := base64.StdEncoding.DecodeString(h)
			if err != nil {
				return nil, fmt.Errorf("state: malformed compact range")
			}
			hashes = append(hashes, b)
		}
		if rng, err = rf.NewRange(0, st.Size, hashes); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		if got, err := rng.GetRootHash(nil); st.Size > 0 && (err != nil || !bytes.Equal(got, sroot)) {
			return nil, errors.New("state: the stored compact range does not match the stored root")
		}
	}

	// Read every new entry and rebuild the root from the stored range: the
	// entries are those the checkpoint commits to, and the tree grew.
	var entries [][]byte
	for i := rng.End(); i < size; {
		bundleIdx := i / layout.EntryBundleWidth
		data, err := m.partial(ctx, layout.PartialTileSize(0, bundleIdx, size), func(p uint8) string { return layout.EntriesPath(bundleIdx, p) }, MaxBundleSize)
		if err != nil {
			return nil, err
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(data); err != nil {
			return nil, fmt.Errorf("%w: entry bundle %d: %w", ErrVerify, bundleIdx, err)
		}
		for j := i % layout.EntryBundleWidth; j < uint64(len(b.Entries)) && i < size; j++ {
			entries = append(entries, b.Entries[j])
			if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(b.Entries[j]), nil); err != nil {
				return nil, err
			}
			i++
		}
		if i%layout.EntryBundleWidth != 0 && i < size {
			return nil, fmt.Errorf("%w: entry bundle %d is short", ErrVerify, bundleIdx)
		}
	}
	got, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		got = rfc6962.DefaultHasher.EmptyRoot()
	}
	if !bytes.Equal(got, root) {
		if st != nil {
			rep.Problems = append(rep.Problems, Problem{SplitView, -1, fmt.Sprintf("the checkpoint of size %d is not an extension of the one verified before (size %d): the log was rewritten", size, st.Size)})
			return rep, nil
		}
		return nil, fmt.Errorf("%w: the entries do not hash to the checkpoint's root", ErrVerify)
	}

	// Checkpoints seen elsewhere.
	if err := m.compare(ctx, policy, size, root, rep); err != nil {
		return nil, err
	}

	var allowed map[string]map[string]bool
	if len(entries) > 0 {
		if allowed, err = m.delegations(ctx, roots); err != nil {
			return nil, err
		}
	}
	for k, leaf := range entries {
		idx := rep.PrevSize + uint64(k)
		e, err := tlog.ParseEntry(leaf)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{BadEntry, int64(idx), err.Error()})
			continue
		}
		rep.Releases = append(rep.Releases, Release{Index: idx, Entry: e})
		keys, delegated := allowed[e.Role]
		if !delegated {
			rep.Problems = append(rep.Problems, Problem{UnknownSigner, int64(idx), fmt.Sprintf("%s@%s: role %q was never delegated", e.Product, e.Version, e.Role)})
		}
		for _, s := range e.Signers {
			if delegated && !keys[s] {
				rep.Problems = append(rep.Problems, Problem{UnknownSigner, int64(idx), fmt.Sprintf("%s@%s: key %s is not a key of role %s in any targets version", e.Product, e.Version, s, e.Role)})
			}
		}
		if m.cfg.Expected != nil && !m.cfg.Expected[e.Product+"@"+e.Version] {
			rep.Problems = append(rep.Problems, Problem{NotExpected, int64(idx), fmt.Sprintf("%s@%s (%s) is not in the expected releases", e.Product, e.Version, e.Target)})
		}
	}
	if len(rep.Problems) == 0 {
		var hs []string
		for _, h := range rng.Hashes() {
			hs = append(hs, b64(h))
		}
		if err := m.saveState(state{Checkpoint: string(cpRaw), Size: size, Root: b64(root), Range: hs}); err != nil {
			return nil, err
		}
		rep.Saved = true
	}
	return rep, nil
}

// compare checks the checkpoints seen elsewhere against the verified one.
func (m *monitor) compare(ctx context.Context, policy tlog.Policy, size uint64, root []byte, rep *Report) error {
	var pb *client.ProofBuilder
	for i, raw := range m.cfg.Checkpoints {
		osize, oroot, err := verifyLogSignature(raw, policy)
		if err != nil {
			return fmt.Errorf("checkpoint %d given: %w", i+1, err)
		}
		switch {
		case osize == size && !bytes.Equal(oroot, root):
			rep.Problems = append(rep.Problems, Problem{SplitView, -1, fmt.Sprintf("two checkpoints of size %d with different roots: %s (repository) and %s (given checkpoint %d)", size, b64(root), b64(oroot), i+1)})
		case osize > size:
			rep.Problems = append(rep.Problems, Problem{Rollback, -1, fmt.Sprintf("given checkpoint %d has size %d, the repository serves an older one (size %d)", i+1, osize, size)})
		case osize < size && osize > 0:
			if pb == nil {
				if pb, err = client.NewProofBuilder(ctx, size, m.tile); err != nil {
					return err
				}
			}
			p, err := pb.ConsistencyProof(ctx, osize, size)
			if err != nil {
				return err
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, osize, size, p, oroot, root); err != nil {
				rep.Problems = append(rep.Problems, Problem{SplitView, -1, fmt.Sprintf("given checkpoint %d (size %d) is not consistent with the repository's (size %d): %v", i+1, osize, size, err)})
			}
		}
	}
	return nil
}

func (m *monitor) tile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return m.partial(ctx, p, func(p uint8) string { return layout.TilePath(level, index, p) }, MaxTileSize)
}

// partial fetches a (partial, p > 0) tile or entry bundle under log/, or
// the full one when the partial one is gone (the log grew and its partial
// files were collected): C2SP tlog-tiles.
func (m *monitor) partial(ctx context.Context, p uint8, path func(uint8) string, max int64) ([]byte, error) {
	b, err := m.get(ctx, "log/"+path(p), max)
	if p > 0 && errors.Is(err, os.ErrNotExist) {
		return m.get(ctx, "log/"+path(0), max)
	}
	return b, err
}

// VerifyCheckpoint verifies a checkpoint against a policy, as a device
// does (tlog.VerifyCheckpoint): the log's signature, the origin, and
// Threshold valid cosignatures (cosignature/v1) of distinct listed
// witnesses. It returns the size, root and the names of the witnesses
// whose cosignatures verified.
func VerifyCheckpoint(raw []byte, policy tlog.Policy) (uint64, []byte, []string, error) {
	c, err := tlog.VerifyCheckpoint(raw, policy)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	names := slices.Clone(c.Cosigners)
	slices.Sort(names)
	return c.Size, c.Hash[:], names, nil
}

// verifyLogSignature verifies only the log's signature (a checkpoint seen
// elsewhere need not carry cosignatures).
func verifyLogSignature(raw []byte, policy tlog.Policy) (uint64, []byte, error) {
	c, err := tlog.VerifyLogSignature(raw, policy)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	return c.Size, c.Hash[:], nil
}

// rootChain returns the trusted roots from the starting one to the newest.
func (m *monitor) rootChain(ctx context.Context) ([]*metadata.Metadata[metadata.RootType], error) {
	start := m.cfg.Root
	if start == nil {
		b, err := durable.ReadFile(durable.OS, filepath.Join(m.cfg.StateDir, "root.json"), MaxRootSize)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		start = b
	}
	if start == nil {
		b, err := m.get(ctx, "metadata/1.root.json", MaxRootSize)
		if err != nil {
			return nil, err
		}
		start = b
	}
	cur, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(start)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	if err := cur.VerifyDelegate(metadata.ROOT, cur); err != nil {
		return nil, fmt.Errorf("trusted root is not signed by its own root keys: %w", err)
	}
	chain := []*metadata.Metadata[metadata.RootType]{cur}
	// Earlier versions give the delegations of older targets versions.
	for v := cur.Signed.Version - 1; v >= 1 && len(chain) < MaxRootVersions; v-- {
		b, err := m.get(ctx, fmt.Sprintf("metadata/%d.root.json", v), MaxRootSize)
		if err != nil {
			break
		}
		older, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(b)
		if err != nil || older.Signed.Version != v {
			break
		}
		// An older root is trusted when it signed the next one.
		if older.VerifyDelegate(metadata.ROOT, chain[0]) != nil {
			break
		}
		chain = append([]*metadata.Metadata[metadata.RootType]{older}, chain...)
	}
	last := cur
	for range MaxRootVersions {
		b, err := m.get(ctx, fmt.Sprintf("metadata/%d.root.json", last.Signed.Version+1), MaxRootSize)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		next, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("%w: root version %d: %w", ErrVerify, last.Signed.Version+1, err)
		}
		if next.Signed.Version != last.Signed.Version+1 {
			return nil, fmt.Errorf("%w: %d.root.json holds version %d", ErrVerify, last.Signed.Version+1, next.Signed.Version)
		}
		if err := last.VerifyDelegate(metadata.ROOT, next); err != nil {
			return nil, fmt.Errorf("%w: root version %d is not signed by the keys of version %d: %w", ErrVerify, next.Signed.Version, last.Signed.Version, err)
		}
		if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
			return nil, fmt.Errorf("%w: root version %d is not signed by its own keys: %w", ErrVerify, next.Signed.Version, err)
		}
		chain = append(chain, next)
		last = next
	}
	data, err := last.ToBytes(false)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(durable.OS, filepath.Join(m.cfg.StateDir, "root.json"), data, 0o644); err != nil {
		return nil, err
	}
	return chain, nil
}

// delegations returns, for each product role, the key IDs any verified
// targets version delegated it to.
func (m *monitor) delegations(ctx context.Context, roots []*metadata.Metadata[metadata.RootType]) (map[string]map[string]bool, error) {
	latest := roots[len(roots)-1]
	tsRaw, err := m.get(ctx, "metadata/timestamp.json", MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	ts, err := (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(tsRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: timestamp: %w", ErrVerify, err)
	}
	if err := latest.VerifyDelegate(metadata.TIMESTAMP, ts); err != nil {
		return nil, fmt.Errorf("%w: timestamp: %w", ErrVerify, err)
	}
	sm := ts.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, fmt.Errorf("%w: timestamp names no snapshot", ErrVerify)
	}
	snRaw, err := m.get(ctx, fmt.Sprintf("metadata/%d.snapshot.json", sm.Version), MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	if err := sm.VerifyLengthHashes(snRaw); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrVerify, err)
	}
	sn, err := (&metadata.Metadata[metadata.SnapshotType]{}).FromBytes(snRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrVerify, err)
	}
	if err := latest.VerifyDelegate(metadata.SNAPSHOT, sn); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrVerify, err)
	}
	tm := sn.Signed.Meta["targets.json"]
	if tm == nil || tm.Version > MaxTargetsVersions {
		return nil, fmt.Errorf("%w: snapshot names no (or too many) targets versions", ErrVerify)
	}
	out := map[string]map[string]bool{}
	for v := int64(1); v <= tm.Version; v++ {
		raw, err := m.get(ctx, fmt.Sprintf("metadata/%d.targets.json", v), MaxMetadataSize)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		t, err := (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(raw)
		if err != nil || t.Signed.Version != v {
			continue
		}
		// Trusted when a root of the chain's targets keys signed it.
		ok := false
		for _, r := range roots {
			if r.VerifyDelegate(metadata.TARGETS, t) == nil {
				ok = true
				break
			}
		}
		if !ok || t.Signed.Delegations == nil {
			continue
		}
		for _, d := range t.Signed.Delegations.Roles {
			if out[d.Name] == nil {
				out[d.Name] = map[string]bool{}
			}
			for _, id := range d.KeyIDs {
				out[d.Name][id] = true
			}
		}
	}
	return out, nil
}

// get fetches base+p, at most max bytes; a 404 wraps os.ErrNotExist.
func (m *monitor) get(ctx context.Context, p string, max int64) ([]byte, error) {
	u := m.base.JoinPath(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", u, os.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("failed to fetch %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("failed to fetch %s: %w", u, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", u, max)
	}
	return b, nil
}

func (m *monitor) loadState() (*state, error) {
	b, err := durable.ReadFile(durable.OS, filepath.Join(m.cfg.StateDir, "state.json"), maxStateSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &st, nil
}

func (m *monitor) saveState(st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(durable.OS, filepath.Join(m.cfg.StateDir, "state.json"), append(b, '\n'), 0o600)
}

// StoredCheckpoint returns the checkpoint stored in dir, or nil.
func StoredCheckpoint(dir string) ([]byte, error) {
	st, err := (&monitor{cfg: Config{StateDir: dir}}).loadState()
	if err != nil || st == nil {
		return nil, err
	}
	return []byte(st.Checkpoint), nil
}

// ParseExpected parses an expected-releases file: one release a line,
// "product@version" or "product version"; blank lines and # comments are
// skipped.
func ParseExpected(data []byte) (map[string]bool, error) {
	if len(data) > MaxExpectedSize {
		return nil, fmt.Errorf("expected releases: %d bytes, more than %d", len(data), MaxExpectedSize)
	}
	out := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, v, ok := strings.Cut(line, "@")
		if !ok {
			f := strings.Fields(line)
			if len(f) != 2 {
				return nil, fmt.Errorf("expected releases: line %d: want PRODUCT@VERSION", i+1)
			}
			p, v = f[0], f[1]
		}
		if p == "" || v == "" || strings.ContainsAny(p+v, " \t") {
			return nil, fmt.Errorf("expected releases: line %d: want PRODUCT@VERSION", i+1)
		}
		out[p+"@"+v] = true
	}
	return out, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
