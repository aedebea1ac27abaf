package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/airlockfw/airlock/tlog"
	xtlog "golang.org/x/mod/sumdb/tlog"
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
	dir := r.logPath()
	hist, err := r.LogHistory()
	if err != nil {
		return nil, err
	}
	sizes := make([]uint64, 0, len(hist))
	for _, h := range hist {
		sizes = append(sizes, h.Size)
	}
	if len(sizes) > tlog.MaxConsistencyProofs {
		sizes = sizes[len(sizes)-tlog.MaxConsistencyProofs:]
	}
	p, err := tlog.NewProver(bundleLogFetcher{dir}).Prove(context.Background(), digest, sizes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the root requires a transparency log, and public/log has none: %w", err)
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
		byHash[h.Size] = xtlog.Hash(h.Root)
	}
	for _, c := range p.Consistency {
		if err := xtlog.CheckTree(c.Hashes, int64(cp.Size), cp.Hash, int64(c.Size), byHash[c.Size]); err != nil {
			return nil, fmt.Errorf("the log's checkpoint of size %d is not consistent with the one of size %d its history records (a fork?): %w", cp.Size, c.Size, err)
		}
	}
	return p.Marshal()
}
