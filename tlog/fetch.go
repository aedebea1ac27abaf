package tlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/airlockfw/airlock/internal/strictjson"
	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of C2SP tlog-tiles: 256 hashes (or entries)
// per full tile.
const TileHeight = 8

// Limits of what the online prover reads.
const (
	// MaxIndexSize bounds a release index file ({"index":N}).
	MaxIndexSize = 64
	// MaxEntryBundleSize bounds an entry bundle: 256 entries of at most
	// MaxEntrySize bytes, each after its 2-byte length.
	MaxEntryBundleSize = (1 << TileHeight) * (2 + MaxEntrySize)
	tileWidth          = 1 << TileHeight
)

// Fetcher reads the files of a log served as C2SP tlog-tiles, by path
// relative to the log's directory: "checkpoint", "tile/<L>/<N>[.p/<W>]",
// "tile/entries/<N>[.p/<W>]" and Airlock's release index
// "releases/<target digest>". It returns at most maxLength bytes (an
// error beyond) and an error wrapping fs.ErrNotExist for a missing file.
// Everything it returns is untrusted.
type Fetcher interface {
	FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error)
}

// Prover builds Proofs from a log served as tiles: the prover of a device
// online and of `airlock bundle create`. It reads the checkpoint once and
// keeps the tiles it verified, so that proofs for several releases of one
// session fetch each file once. Not safe for concurrent use.
type Prover struct {
	f     Fetcher
	cp    []byte
	tiles map[tlog.Tile][]byte
}

// NewProver returns a Prover reading from f.
func NewProver(f Fetcher) *Prover { return &Prover{f: f, tiles: map[tlog.Tile][]byte{}} }

// Checkpoint returns the log's current checkpoint note (fetched once).
func (pr *Prover) Checkpoint(ctx context.Context) ([]byte, error) {
	if pr.cp == nil {
		b, err := pr.f.FetchLog(ctx, "checkpoint", MaxCheckpointSize)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: the repository serves no log checkpoint: %w", ErrNotLogged, err)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to fetch the log checkpoint: %w", err)
		}
		pr.cp = b
	}
	return pr.cp, nil
}

// Prove builds the proof for the entry the release index names for
// digest (the target digest, TargetDigest), under the log's checkpoint,
// with consistency proofs from each of the sizes in from that are smaller
// than the checkpoint's. A release the index does not name is refused
// with ErrNotLogged. Every tile read is checked against the checkpoint's
// root hash before it is used; the checkpoint's signatures are not checked
// here (Proof.Verify does).
func (pr *Prover) Prove(ctx context.Context, digest string, from []uint64) (*Proof, error) {
	raw, err := pr.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	cp, err := ParseHeld(raw)
	if err != nil {
		return nil, err
	}
	if !isHex(digest, 64) {
		return nil, fmt.Errorf("%w: target digest %q", ErrNotLogged, digest)
	}
	ib, err := pr.f.FetchLog(ctx, "releases/"+digest, MaxIndexSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: the log has no entry for target digest %s", ErrNotLogged, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to fetch the log index of %s: %w", digest, err)
	}
	index, err := ParseIndex(ib)
	if err != nil {
		return nil, fmt.Errorf("%w: the log's index file for %s: %v", ErrNotLogged, digest, err)
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("%w: entry %d is not under the log's checkpoint of %d entries yet", ErrNotLogged, index, cp.Size)
	}
	p := &Proof{Checkpoint: raw, Index: index}
	if p.Entry, err = pr.entry(ctx, cp.Size, index); err != nil {
		return nil, err
	}
	hr := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: cp.Hash}, &tileReader{ctx: ctx, pr: pr})
	if p.Inclusion, err = tlog.ProveRecord(int64(cp.Size), int64(index), hr); err != nil {
		return nil, fmt.Errorf("%w: cannot prove entry %d under the checkpoint: %v", ErrInclusion, index, err)
	}
	for _, s := range from {
		if s == 0 || s >= cp.Size {
			continue
		}
		h, err := tlog.ProveTree(int64(cp.Size), int64(s), hr)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot prove the tree of size %d extends the one of size %d: %v", ErrConsistency, cp.Size, s, err)
		}
		p.Consistency = append(p.Consistency, Consistency{Size: s, Hashes: h})
	}
	return p, nil
}

// entry returns the bytes of entry index from its entry bundle.
func (pr *Prover) entry(ctx context.Context, size, index uint64) ([]byte, error) {
	n := index / tileWidth
	w := min(size-n*tileWidth, tileWidth)
	t := tlog.Tile{H: TileHeight, L: -1, N: int64(n), W: int(w)}
	b, err := pr.fetchTile(ctx, t, MaxEntryBundleSize)
	if err != nil {
		return nil, err
	}
	entries, err := ParseEntryBundle(b)
	if err != nil {
		return nil, err
	}
	if uint64(len(entries)) < w {
		return nil, fmt.Errorf("%w: entry bundle %d has %d entries, want %d", ErrInclusion, n, len(entries), w)
	}
	return entries[index%tileWidth], nil
}

// ParseEntryBundle splits a C2SP tlog-tiles entry bundle: up to 256
// entries, each a big-endian uint16 length and that many bytes, of at most
// MaxEntrySize bytes.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 || len(out) == tileWidth {
			return nil, fmt.Errorf("%w: malformed entry bundle", ErrInclusion)
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) || n > MaxEntrySize {
			return nil, fmt.Errorf("%w: malformed entry bundle: entry %d is %d bytes", ErrInclusion, len(out), n)
		}
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out, nil
}

// TilePath returns the C2SP tlog-tiles path of t: "tile/<L>/<N>[.p/<W>]",
// "tile/entries/<N>[.p/<W>]" for level -1, N in groups of three digits,
// all but the last prefixed by "x".
func TilePath(t tlog.Tile) string {
	// x/mod writes "tile/<H>/<L or data>/<N>[.p/<W>]": the same encoding
	// of N and W, with the height and "data".
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", t.H))
	if rest, ok := strings.CutPrefix(p, "data/"); ok {
		return "tile/entries/" + rest
	}
	return "tile/" + p
}

// fetchTile reads tile t; a partial tile that is gone (the log completed
// it) is read from the full tile.
func (pr *Prover) fetchTile(ctx context.Context, t tlog.Tile, max int64) ([]byte, error) {
	b, err := pr.f.FetchLog(ctx, TilePath(t), max)
	if errors.Is(err, fs.ErrNotExist) && t.W < tileWidth {
		full := t
		full.W = tileWidth
		fmax := int64(tileWidth * tlog.HashSize)
		if t.L < 0 {
			fmax = MaxEntryBundleSize
		}
		b, err = pr.f.FetchLog(ctx, TilePath(full), fmax)
		if err == nil && t.L >= 0 && len(b) == tileWidth*tlog.HashSize {
			b = b[:t.W*tlog.HashSize]
		}
		if err == nil && t.L < 0 {
			if es, perr := ParseEntryBundle(b); perr == nil && len(es) >= t.W {
				return b, nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to fetch log file %s: %w", TilePath(t), err)
	}
	return b, nil
}

// tileReader is the tlog.TileReader of a Prover: x/mod's TileHashReader
// checks every tile it reads against the tree's root hash and saves only
// the tiles that passed.
type tileReader struct {
	ctx context.Context
	pr  *Prover
}

func (r *tileReader) Height() int { return TileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if b, ok := r.pr.tiles[t]; ok {
			out[i] = b
			continue
		}
		b, err := r.pr.fetchTile(r.ctx, t, int64(t.W*tlog.HashSize))
		if err != nil {
			return nil, err
		}
		if len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("log tile %s is %d bytes, want %d", TilePath(t), len(b), t.W*tlog.HashSize)
		}
		out[i] = b
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	for i, t := range tiles {
		r.pr.tiles[t] = data[i]
	}
}

// ErrIndex is wrapped by ParseIndex errors.
var ErrIndex = errors.New("malformed log index file")

// MarshalIndex returns the index file of a release whose entry is at
// index: {"index":N}, what ParseIndex reads.
func MarshalIndex(index uint64) []byte { return fmt.Appendf(nil, `{"index":%d}`, index) }

// ParseIndex parses a release's index file ("releases/<target digest>"
// beside the log): {"index":N}, at most MaxIndexSize bytes, strictly. The
// file is not authenticated: the entry it points to is checked against
// the release and proved under the checkpoint.
func ParseIndex(b []byte) (uint64, error) {
	var ix struct {
		Index *uint64 `json:"index"`
	}
	if err := (strictjson.Limits{Size: MaxIndexSize, Depth: 2}).Unmarshal(b, &ix); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrIndex, err)
	}
	if ix.Index == nil {
		return 0, fmt.Errorf("%w: no index", ErrIndex)
	}
	return *ix.Index, nil
}
