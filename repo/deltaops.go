package repo

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/delta/deltaenc"
	"github.com/airlockfw/airlock/release"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The delta operations: AddDelta signs a delta into an existing release,
// deltaPayload gives a delta bundle its payload, DeltaStatsOf and
// DeltaStatsFiles report what the encoder would make.

// AddDelta signs a delta for an existing release: it makes the delta file
// that rebuilds product's release version from release from (both schema
// 2, same product; from older than version unless version was signed with
// AllowDowngrade), adds the delta to the release's metadata and re-signs
// the product role's metadata with signers, staged like any change: the
// role's threshold must sign it ('release sign') before Publish makes it
// effective, and pending approvals of the role are cleared. It refuses a
// delta the release already signs, and more than release.MaxDeltas.
//
// It holds the repository lock (LockFile), enforces the environment rule on
// its signers (Options.Keyring) and appends its audit entry
// (release.delta_added), if the repository keeps an audit log.
func (r *Repo) AddDelta(product, version, from string, signers ...crypto.Signer) (*DeltaInfo, *ReleaseInfo, error) {
	unlock, err := r.lock("delta create")
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if err := r.checkSigners(signers...); err != nil {
		return nil, nil, err
	}
	info, rel, err := r.addDelta(product, version, from, signers)
	if err != nil {
		return nil, nil, err
	}
	err = r.record(audit.Entry{Action: audit.ReleaseDeltaAdded, Release: rel.Product + "@" + rel.Version, Details: deltaDetails(info, signers)})
	return info, rel, err
}

func deltaDetails(d *DeltaInfo, signers []crypto.Signer) map[string]string {
	return map[string]string{"from": d.From, "length": fmt.Sprint(d.Length),
		"tree_sha256": hex.EncodeToString(d.Delta.Tree.HeaderSHA256[:]), "data_sha256": hex.EncodeToString(d.Delta.Data.HeaderSHA256[:]),
		"keys": signerIDs(signers...)}
}

func (r *Repo) addDelta(product, version, from string, signers []crypto.Signer) (*DeltaInfo, *ReleaseInfo, error) {
	p, role, err := productRole(product)
	if err != nil {
		return nil, nil, err
	}
	v, err := release.ParseVersion(version)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if len(signers) == 0 {
		return nil, nil, fmt.Errorf("%w: at least one product key must sign", ErrInvalidOptions)
	}
	rk, err := r.delegation(p)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range signers {
		if _, err := rk.authorize(s, role); err != nil {
			return nil, nil, err
		}
	}
	md, err := r.nextTargetsVersion(role, r.cfg.Expires.Product)
	if err != nil {
		return nil, nil, err
	}
	tp := findVersion(md, v.String())
	if tp == "" {
		return nil, nil, fmt.Errorf("%w: no release %s %s", ErrNotFound, p, v)
	}
	tf := md.Signed.Targets[tp]
	if tf.Custom == nil {
		return nil, nil, fmt.Errorf("%w: target %q has no airlock metadata", ErrInvalidMetadata, tp)
	}
	meta, err := release.ParseCustom(*tf.Custom)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	if fv, err := release.ParseVersion(from); err == nil && meta.DeltaFrom(fv.String()) != nil {
		return nil, nil, fmt.Errorf("%w: %s %s already signs a delta from %s", ErrDeltaExists, p, v, fv)
	}
	if err := checkDeltaBases(md, meta, []string{from}); err != nil {
		return nil, nil, err
	}
	infos, remove, err := r.deltasFor(md, tp, tf, []string{from})
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			remove()
		}
	}()
	meta.Deltas = append(meta.Deltas, infos[0].Delta)
	if err := meta.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	custom, err := release.MarshalCustom(meta)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	ntf := *tf
	ntf.Custom = &custom
	md.Signed.Targets[tp] = &ntf
	if err := signWith(md, signers, rk, role); err != nil {
		return nil, nil, err
	}
	if err := writeStaged(r, role, md); err != nil {
		return nil, nil, err
	}
	ok = true
	have, _ := countValid(md, rk)
	return infos[0], &ReleaseInfo{Product: p.String(), Version: v.String(), TargetPath: tp, Length: tf.Length,
		SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Metadata: meta, Signatures: have, Threshold: rk.threshold,
		Deltas: infos}, nil
}

// ErrNoDelta: a delta bundle was asked for a delta the release does not
// sign, or whose file is missing or does not match what is signed.
var ErrNoDelta = errors.New("no signed delta")

// deltaPayload returns the delta file a delta bundle of the published
// release at tp (target tf) from version from carries, and its length,
// after checking it against the signed delta: its length and both
// headers (parsed as a device parses them, digests compared).
func (r *Repo) deltaPayload(p release.Product, tp string, tf *metadata.TargetFiles, from string) (string, int64, error) {
	_, v, _, err := release.ParseTargetPath(tp)
	if err != nil {
		return "", 0, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	fv, err := release.ParseVersion(from)
	if err != nil {
		return "", 0, fmt.Errorf("%w: delta base %q: %w", ErrInvalidOptions, from, err)
	}
	hint := fmt.Sprintf("sign one with 'airlock delta create --dir %s --product %s --from %s --to %s --key KEY' (or 'release add --delta-from') and publish it", r.dir, p, fv, v)
	if tf.Custom == nil {
		return "", 0, fmt.Errorf("%w: target %q has no airlock metadata", ErrInvalidMetadata, tp)
	}
	meta, err := release.ParseCustom(*tf.Custom)
	if err != nil {
		return "", 0, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	d := meta.DeltaFrom(fv.String())
	if d == nil {
		return "", 0, fmt.Errorf("%w: the published %s %s signs no delta from %s: %s", ErrNoDelta, p, v, fv, hint)
	}
	path := r.deltaPath(p, v.String(), fv.String())
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return "", 0, fmt.Errorf("%w: the delta file of %s %s from %s: %w; %s", ErrNoDelta, p, v, fv, err, hint)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	got, err := readDeltaFile(f, fi.Size(), nil)
	if err == nil && (fi.Size() != d.Length() || got.Tree != d.Tree || got.Data != d.Data) {
		err = fmt.Errorf("it is %d bytes, the signed delta %d, or its headers differ", fi.Size(), d.Length())
	}
	if err != nil {
		return "", 0, fmt.Errorf("%w: the delta file %s does not match the delta %s %s signs from %s: %v; re-create it or %s", ErrNoDelta, path, p, v, fv, err, hint)
	}
	return path, d.Length(), nil
}

// DeltaStats is what the encoder would make of a delta between two
// releases of a repository (DeltaStatsOf) or two image files.
type DeltaStats struct {
	// Tree is nil for two image files (they have no tree).
	Tree *deltaenc.Stats
	Data *deltaenc.Stats
	// PayloadLength is the new release's whole payload (what a whole bundle
	// or a full download carries); 0 for two image files.
	PayloadLength int64
}

// DeltaStatsOf runs the encoder on two releases of product, from and to,
// as AddDelta would (their images and trees read from their payloads in
// the repository), without writing or signing anything, and reports what
// it made. It takes no lock: it only reads (a compressed payload is
// decoded into a temp file under REPO/deltas, removed afterwards).
func (r *Repo) DeltaStatsOf(product, from, to string) (*DeltaStats, error) {
	p, role, err := productRole(product)
	if err != nil {
		return nil, err
	}
	md, _, err := r.currentRole(role)
	if err != nil {
		return nil, err
	}
	if md == nil {
		return nil, fmt.Errorf("%w: no releases of %s", ErrNotFound, p)
	}
	open := func(v string) (*releaseImage, error) {
		pv, err := release.ParseVersion(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		tp := findVersion(md, pv.String())
		if tp == "" {
			return nil, fmt.Errorf("%w: no release %s %s", ErrNotFound, p, pv)
		}
		scratch := r.path(DeltasDir, filepath.FromSlash(p.String()), pv.String())
		if err := fsys.MkdirAll(scratch, DirMode); err != nil {
			return nil, fmt.Errorf("failed to create %s: %w", scratch, err)
		}
		return r.openReleaseImage(fsys, tp, md.Signed.Targets[tp], scratch)
	}
	base, err := open(from)
	if err != nil {
		return nil, err
	}
	defer base.close()
	target, err := open(to)
	if err != nil {
		return nil, err
	}
	defer target.close()
	bm, tm := base.meta, target.meta
	st := &DeltaStats{PayloadLength: md.Signed.Targets[findVersion(md, tm.Version.String())].Length}
	if st.Tree, err = deltaenc.Create(io.Discard, base.tree, bm.Index.TreeLength, target.tree, tm.Index.TreeLength, deltaenc.Options{}); err != nil {
		return nil, err
	}
	if st.Data, err = deltaenc.Create(io.Discard, base.image, bm.Installed.Length, target.image, tm.Installed.Length, deltaenc.Options{}); err != nil {
		return nil, err
	}
	return st, nil
}

// DeltaStatsFiles runs the encoder on two image files, without a
// repository, and reports what it made (the delta itself is discarded).
func DeltaStatsFiles(oldPath, newPath string) (*DeltaStats, error) {
	var files [2]*os.File
	var sizes [2]int64
	for i, p := range []string{oldPath, newPath} {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalidOptions, p)
		}
		files[i], sizes[i] = f, fi.Size()
	}
	data, err := deltaenc.Create(io.Discard, files[0], sizes[0], files[1], sizes[1], deltaenc.Options{})
	if err != nil {
		return nil, err
	}
	return &DeltaStats{Data: data}, nil
}
