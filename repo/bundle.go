package repo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// CreateBundle writes an offline bundle of a published release to w: root
// versions 2..N, the published timestamp, the snapshot it names, the targets
// and product role versions that snapshot names, the target path, and the
// payload, streamed from public/targets.
func (r *Repo) CreateBundle(w io.Writer, product, version string) error {
	p, role, err := productRole(product)
	if err != nil {
		return err
	}
	n, err := r.latestVersion(metadata.ROOT)
	if err != nil {
		return err
	}
	var m bundle.Metadata
	for v := int64(2); v <= n; v++ {
		data, err := readLimited(r.metaPath(fmt.Sprintf("%d.root.json", v)), MaxRootSize)
		if err != nil {
			return err
		}
		m.RootChain = append(m.RootChain, data)
	}
	ts, tsData, err := loadMD[metadata.TimestampType](r.metaPath("timestamp.json"), MaxMetadataSize)
	if err != nil {
		return err
	}
	m.Timestamp = tsData
	sm, ok := ts.Signed.Meta["snapshot.json"]
	if !ok {
		return fmt.Errorf("%w: timestamp names no snapshot", ErrInvalidMetadata)
	}
	snap, snapData, err := loadMD[metadata.SnapshotType](r.metaPath(fmt.Sprintf("%d.snapshot.json", sm.Version)), MaxMetadataSize)
	if err != nil {
		return err
	}
	m.Snapshot = snapData
	tm, ok := snap.Signed.Meta["targets.json"]
	if !ok {
		return fmt.Errorf("%w: snapshot names no targets", ErrInvalidMetadata)
	}
	if m.Targets, err = readLimited(r.metaPath(fmt.Sprintf("%d.targets.json", tm.Version)), MaxMetadataSize); err != nil {
		return err
	}
	rm, ok := snap.Signed.Meta[role+".json"]
	if !ok {
		return fmt.Errorf("%w: %s has no published releases", ErrNotFound, p)
	}
	roleMD, roleData, err := loadMD[metadata.TargetsType](r.metaPath(fmt.Sprintf("%d.%s.json", rm.Version, role)), MaxMetadataSize)
	if err != nil {
		return err
	}
	m.Delegated = []bundle.Role{{Name: role, Data: roleData}}
	tp := findVersion(roleMD, version)
	if tp == "" {
		return fmt.Errorf("%w: release %s %s is not published", ErrNotFound, p, version)
	}
	tf := roleMD.Signed.Targets[tp]
	src, staged, err := r.payloadPath(tp, tf)
	if err != nil {
		return err
	}
	if staged {
		return fmt.Errorf("%w: payload of %s is still staged", ErrNotFound, tp)
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("failed to open payload: %w", err)
	}
	defer f.Close()
	m.TargetPath = tp
	m.PayloadLength = tf.Length
	var payload io.Reader = f
	if r.opts.Progress != nil {
		payload = io.TeeReader(f, r.opts.Progress(tf.Length))
	}
	return bundle.Write(w, &m, payload)
}

// CreateBundleFile writes an offline bundle of a published release to a new
// file at path and returns its size. The file appears only when complete
// (temp file, fsync, then a hard link into place) and is never replaced:
// if path exists, even if it appeared meanwhile, it fails with an error
// wrapping fs.ErrExist.
func (r *Repo) CreateBundleFile(path, product, version string) (int64, error) {
	if _, err := fsys.Lstat(path); err == nil {
		return 0, fmt.Errorf("%s already exists; refusing to overwrite it: %w", path, fs.ErrExist)
	}
	f, err := durable.CreateTemp(fsys, filepath.Dir(path), FileMode)
	if err != nil {
		return 0, err
	}
	defer f.Abort()
	cw := &countingWriter{w: f}
	if err := r.CreateBundle(cw, product, version); err != nil {
		return 0, err
	}
	if err := f.CommitNew(path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("%s already exists; refusing to overwrite it: %w", path, fs.ErrExist)
		}
		return 0, err
	}
	return cw.n, nil
}
