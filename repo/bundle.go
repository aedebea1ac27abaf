package repo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// BundleInfo describes an offline bundle CreateBundle wrote.
type BundleInfo struct {
	Size       int64  `json:"size"` // bytes (CreateBundleFile only)
	TargetPath string `json:"target"`
	// InstallsUntil is when the first of the roles a device checks the
	// expiry of in a bundle (root, targets, the product's role) expires,
	// ExpiringRole that role: a device with the default freshness policy
	// installs the bundle until then (docs/bundle-format.md, "Freshness").
	InstallsUntil time.Time `json:"installs_until"`
	ExpiringRole  string    `json:"expiring_role"`
	// TimestampExpires is when the bundle's timestamp expires: the end of
	// its life on devices configured with bundle_freshness = "timestamp".
	TimestampExpires time.Time `json:"timestamp_expires"`
	// DeltaFrom is, for a delta bundle (format 2), the release it applies
	// to; "" for a whole bundle.
	DeltaFrom string `json:"delta_from,omitempty"`
	// PayloadLength is the bundle's payload: the delta file for a delta
	// bundle; FullPayloadLength the release's whole payload (what a whole
	// bundle carries), for comparison.
	PayloadLength     int64 `json:"payload_length"`
	FullPayloadLength int64 `json:"full_payload_length"`
}

// BundleOptions say which bundle CreateBundleWith writes.
type BundleOptions struct {
	Product string // product ID
	Version string // a published release of it
	// DeltaFrom, if not empty, makes a delta bundle for devices running
	// that release: its payload is the delta the release signs from it
	// (made by AddRelease with ReleaseOptions.DeltaFrom or by AddDelta,
	// and published). Empty: a whole bundle.
	DeltaFrom string
}

// CreateBundle writes an offline bundle of a published release to w: root
// versions 2..N, the published timestamp, the snapshot it names, the targets
// and product role versions that snapshot names, the target path, and the
// payload, streamed from public/targets.
func (r *Repo) CreateBundle(w io.Writer, product, version string) error {
	_, err := r.CreateBundleWith(w, BundleOptions{Product: product, Version: version})
	return err
}

// CreateBundleWith writes the offline bundle o describes to w: a whole
// bundle as CreateBundle does, or with o.DeltaFrom a delta bundle (format
// 2), whose metadata is the same and whose payload is the delta file the
// release signs from o.DeltaFrom, checked against the signed lengths and
// header digests first.
func (r *Repo) CreateBundleWith(w io.Writer, o BundleOptions) (*BundleInfo, error) {
	return r.createBundle(w, o)
}

func (r *Repo) createBundle(w io.Writer, o BundleOptions) (*BundleInfo, error) {
	product, version := o.Product, o.Version
	p, role, err := productRole(product)
	if err != nil {
		return nil, err
	}
	n, err := r.latestVersion(metadata.ROOT)
	if err != nil {
		return nil, err
	}
	info := &BundleInfo{}
	expires := func(name string, t time.Time) {
		if info.ExpiringRole == "" || t.Before(info.InstallsUntil) {
			info.InstallsUntil, info.ExpiringRole = t, name
		}
	}
	var m bundle.Metadata
	for v := int64(2); v <= n; v++ {
		data, err := readLimited(r.metaPath(fmt.Sprintf("%d.root.json", v)), MaxRootSize)
		if err != nil {
			return nil, err
		}
		m.RootChain = append(m.RootChain, data)
	}
	// The newest root: the last of the chain, or version 1 (not carried).
	var rootData []byte
	if len(m.RootChain) > 0 {
		rootData = m.RootChain[len(m.RootChain)-1]
	} else if rootData, err = readLimited(r.metaPath("1.root.json"), MaxRootSize); err != nil {
		return nil, err
	}
	root, err := parseMD[metadata.RootType](rootData)
	if err != nil {
		return nil, err
	}
	expires(metadata.ROOT, root.Signed.Expires)
	ts, tsData, err := loadMD[metadata.TimestampType](r.metaPath("timestamp.json"), MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	info.TimestampExpires = ts.Signed.Expires
	m.Timestamp = tsData
	sm, ok := ts.Signed.Meta["snapshot.json"]
	if !ok {
		return nil, fmt.Errorf("%w: timestamp names no snapshot", ErrInvalidMetadata)
	}
	snap, snapData, err := loadMD[metadata.SnapshotType](r.metaPath(fmt.Sprintf("%d.snapshot.json", sm.Version)), MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	m.Snapshot = snapData
	tm, ok := snap.Signed.Meta["targets.json"]
	if !ok {
		return nil, fmt.Errorf("%w: snapshot names no targets", ErrInvalidMetadata)
	}
	targets, targetsData, err := loadMD[metadata.TargetsType](r.metaPath(fmt.Sprintf("%d.targets.json", tm.Version)), MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	m.Targets = targetsData
	expires(metadata.TARGETS, targets.Signed.Expires)
	rm, ok := snap.Signed.Meta[role+".json"]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no published releases", ErrNotFound, p)
	}
	roleMD, roleData, err := loadMD[metadata.TargetsType](r.metaPath(fmt.Sprintf("%d.%s.json", rm.Version, role)), MaxMetadataSize)
	if err != nil {
		return nil, err
	}
	expires(p.String(), roleMD.Signed.Expires)
	m.Delegated = []bundle.Role{{Name: role, Data: roleData}}
	tp := findVersion(roleMD, version)
	if tp == "" {
		return nil, fmt.Errorf("%w: release %s %s is not published", ErrNotFound, p, version)
	}
	tf := roleMD.Signed.Targets[tp]
	src, staged, err := r.payloadPath(tp, tf)
	if err != nil {
		return nil, err
	}
	if staged {
		return nil, fmt.Errorf("%w: payload of %s is still staged", ErrNotFound, tp)
	}
	m.TargetPath = tp
	m.PayloadLength = tf.Length
	if m.LogProof, err = r.bundleLogProof(rootData, roleData, tp); err != nil {
		return nil, err
	}
	info.TargetPath = tp
	info.PayloadLength, info.FullPayloadLength = tf.Length, tf.Length
	if o.DeltaFrom != "" {
		src, m.PayloadLength, err = r.deltaPayload(p, tp, tf, o.DeltaFrom)
		if err != nil {
			return nil, err
		}
		m.DeltaFrom, info.DeltaFrom, info.PayloadLength = o.DeltaFrom, o.DeltaFrom, m.PayloadLength
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("failed to open payload: %w", err)
	}
	defer f.Close()
	var payload io.Reader = io.LimitReader(f, m.PayloadLength)
	if r.opts.Progress != nil {
		payload = io.TeeReader(payload, r.opts.Progress(m.PayloadLength))
	}
	if err := bundle.Write(w, &m, payload); err != nil {
		return nil, err
	}
	return info, nil
}

// CreateBundleFile writes an offline bundle of a published release to a
// new file at path. The file appears only when complete (temp file, fsync,
// then a hard link into place). Without replace it is never replaced: if
// path exists, even if it appeared meanwhile, it fails with an error
// wrapping fs.ErrExist. With replace, an existing regular file at path is
// atomically replaced (rename) by the complete new bundle, so a reader sees
// the old bundle or the new one, never a mix.
func (r *Repo) CreateBundleFile(path, product, version string, replace bool) (*BundleInfo, error) {
	return r.CreateBundleFileWith(path, BundleOptions{Product: product, Version: version}, replace)
}

// CreateBundleFileWith is CreateBundleFile for the bundle o describes (a
// delta bundle with o.DeltaFrom).
func (r *Repo) CreateBundleFileWith(path string, o BundleOptions, replace bool) (*BundleInfo, error) {
	exists := fmt.Errorf("%s already exists; refusing to overwrite it (--force re-creates it): %w", path, fs.ErrExist)
	if fi, err := fsys.Lstat(path); err == nil {
		if !replace {
			return nil, exists
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file; refusing to replace it", path)
		}
	}
	f, err := durable.CreateTemp(fsys, filepath.Dir(path), FileMode)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	cw := &countingWriter{w: f}
	info, err := r.createBundle(cw, o)
	if err != nil {
		return nil, err
	}
	if replace {
		err = f.Commit(path)
	} else if err = f.CommitNew(path); errors.Is(err, fs.ErrExist) {
		err = exists
	}
	if err != nil {
		return nil, err
	}
	info.Size = cw.n
	return info, nil
}
