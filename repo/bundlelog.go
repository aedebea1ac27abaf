package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlockfw/airlock/tlog"
	xtlog "golang.org/x/mod/sumdb/tlog"
)

// Files of the transparency log in public/ (docs/transparency.md), as the
// bundle writer reads them.
const (
	bundleLogDir     = "log"     // under public/
	bundleLogHistory = "history" // under public/log: "<size> <base64 root hash>" per checkpoint
	// maxBundleLogHistory bounds the history file a bundle writer reads.
	maxBundleLogHistory = 16 << 20
)

// bundleLogFetcher is a tlog.Fetcher over public/log.
type bundleLogFetcher struct{ dir string }

func (f bundleLogFetcher) FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !fs.ValidPath(path) {
		return nil, fmt.Errorf("log path %q: %w", path, fs.ErrInvalid)
	}
	return readLimited(filepath.Join(f.dir, filepath.FromSlash(path)), maxLength)
}

// bundleLogProof returns the log proof member of a bundle of target tp as
// listed (info, the file info exactly as signed) in the product role: nil
// when the root (rootData, the newest) sets no transparency policy. The
// proof is built from public/log under its current checkpoint, with a
// consistency proof from every earlier size in public/log/history (the
// newest tlog.MaxConsistencyProofs), each checked against the root hash
// the history recorded for it: a log that forked is not bundled.
func (r *Repo) bundleLogProof(rootData, roleData []byte, tp string) ([]byte, error) {
	var root struct {
		Signed map[string]json.RawMessage `json:"signed"`
	}
	if err := json.Unmarshal(rootData, &root); err != nil {
		return nil, fmt.Errorf("%w: root: %v", ErrInvalidMetadata, err)
	}
	if _, ok := root.Signed[tlog.PolicyField]; !ok {
		return nil, nil
	}
	var role struct {
		Signed struct {
			Targets map[string]json.RawMessage `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(roleData, &role); err != nil || role.Signed.Targets[tp] == nil {
		return nil, fmt.Errorf("%w: the product role does not list %s", ErrInvalidMetadata, tp)
	}
	digest, err := tlog.TargetDigest(role.Signed.Targets[tp])
	if err != nil {
		return nil, err
	}
	dir := r.path(PublicDir, bundleLogDir)
	hist, err := readBundleLogHistory(filepath.Join(dir, bundleLogHistory))
	if err != nil {
		return nil, err
	}
	sizes := make([]uint64, 0, len(hist))
	for _, h := range hist {
		sizes = append(sizes, h.size)
	}
	if len(sizes) > tlog.MaxConsistencyProofs {
		sizes = sizes[len(sizes)-tlog.MaxConsistencyProofs:]
	}
	p, err := tlog.NewProver(bundleLogFetcher{dir}).Prove(context.Background(), digest, sizes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the root requires a transparency log, and public/%s has none: %w", bundleLogDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to prove %s in the transparency log: %w", tp, err)
	}
	cp, err := tlog.ParseHeld(p.Checkpoint)
	if err != nil {
		return nil, err
	}
	byHash := map[uint64]xtlog.Hash{}
	for _, h := range hist {
		byHash[h.size] = h.hash
	}
	for _, c := range p.Consistency {
		if err := xtlog.CheckTree(c.Hashes, int64(cp.Size), cp.Hash, int64(c.Size), byHash[c.Size]); err != nil {
			return nil, fmt.Errorf("the log's checkpoint of size %d is not consistent with the one of size %d its history records (a fork?): %w", cp.Size, c.Size, err)
		}
	}
	return p.Marshal()
}

type bundleLogHistoryLine struct {
	size uint64
	hash xtlog.Hash
}

// readBundleLogHistory reads public/log/history: "<size> <base64 root hash>"
// lines in increasing size (a size may repeat with the same hash). A
// missing file is an empty history.
func readBundleLogHistory(path string) ([]bundleLogHistoryLine, error) {
	data, err := readLimited(path, maxBundleLogHistory)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []bundleLogHistoryLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		s, h, ok := strings.Cut(sc.Text(), " ")
		size, serr := strconv.ParseUint(s, 10, 64)
		hb, herr := base64.StdEncoding.Strict().DecodeString(h)
		if !ok || serr != nil || herr != nil || len(hb) != xtlog.HashSize {
			return nil, fmt.Errorf("%s line %d: want \"<size> <base64 root hash>\"", path, n)
		}
		var l bundleLogHistoryLine
		l.size = size
		copy(l.hash[:], hb)
		if k := len(out); k > 0 && out[k-1].size == size {
			if out[k-1].hash != l.hash {
				return nil, fmt.Errorf("%s line %d: two root hashes for size %d: the log forked", path, n, size)
			}
			continue
		}
		if k := len(out); k > 0 && out[k-1].size > size {
			return nil, fmt.Errorf("%s line %d: size %d after %d", path, n, size, out[k-1].size)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}
