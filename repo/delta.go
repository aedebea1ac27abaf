package repo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/delta/deltaenc"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Delta files (docs/delta-format.md, docs/repository.md "Delta updates").
//
// A release signs, for each older release it can be reached from, a delta:
// two delta streams, one after the other, in one file of the repository,
// REPO/deltas/<product>/<version>/from-<base>.delta. The tree stream
// rebuilds the release's dm-verity hash tree from the base's tree; the data
// stream rebuilds its image from the base's image. The file is what a delta
// bundle carries as its payload. It is never served: online devices fetch
// the blocks they miss from the unchanged payload with HTTP Range requests.

// DeltasDir is the directory of delta files in a repository.
const DeltasDir = "deltas"

// ErrNoIndex: a delta was asked against (or for) a schema 1 release, which
// has no block index (hash tree) to rebuild and verify.
var ErrNoIndex = errors.New("release has no block index (schema 1)")

// ErrDeltaExists: the release already signs a delta from that base.
var ErrDeltaExists = errors.New("delta already signed")

// DeltaInfo describes a delta made for a release.
type DeltaInfo struct {
	Product string `json:"product"`
	Version string `json:"version"` // the release the delta rebuilds
	From    string `json:"from"`    // the release it applies to
	// Delta is what the release metadata signs.
	Delta release.Delta `json:"-"`
	// Path is the delta file in the repository.
	Path string `json:"path"`
	// Length is the delta file's length: a delta bundle's payload.
	Length int64 `json:"length"`
	// Tree and Data say what the encoder made of each stream.
	Tree *deltaenc.Stats `json:"tree"`
	Data *deltaenc.Stats `json:"data"`
}

// deltaPath is where the delta rebuilding version of product p from from
// is kept.
func (r *Repo) deltaPath(p release.Product, version, from string) string {
	return r.path(DeltasDir, filepath.FromSlash(p.String()), version, "from-"+from+".delta")
}

// releaseImage is a schema 2 release's installed image and hash tree, read
// from its payload file in the repository.
type releaseImage struct {
	version string
	meta    *release.Metadata
	image   io.ReaderAt // meta.Installed.Length bytes
	tree    io.ReaderAt // meta.Index.TreeLength bytes
	files   []io.Closer
	scratch *durable.Pending // a compressed payload's decoded image
}

func (ri *releaseImage) close() {
	for _, f := range ri.files {
		f.Close()
	}
	if ri.scratch != nil {
		ri.scratch.Abort()
	}
}

// openReleaseImage opens the payload of the release at target path tp of
// the product role's metadata and checks it against the signed target (its
// length and SHA-256). An uncompressed payload's image and tree are
// sections of the file; a compressed payload's frames are decoded into a
// temp file in scratchDir (removed by close), checked against the signed
// installed length and SHA-256.
func (r *Repo) openReleaseImage(fsys durable.FS, tp string, tf *metadata.TargetFiles, scratchDir string) (ri *releaseImage, err error) {
	_, v, _, err := release.ParseTargetPath(tp)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	if tf.Custom == nil {
		return nil, fmt.Errorf("%w: target %q has no airlock metadata", ErrInvalidMetadata, tp)
	}
	meta, err := release.ParseCustom(*tf.Custom)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	if meta.Index == nil {
		return nil, fmt.Errorf("%w: %s %s has no hash tree to make a delta against or to (re-add it with schema 2)", ErrNoIndex, meta.Product, v)
	}
	src, _, err := r.payloadPath(tp, tf)
	if err != nil {
		return nil, err
	}
	ri = &releaseImage{version: v.String(), meta: meta}
	opened := ri
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	f, err := fsys.OpenFile(src, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open the payload of %s: %w", tp, err)
	}
	ri.files = append(ri.files, f)
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	want, ok := tf.Hashes["sha256"]
	if fi.Size() != tf.Length || !ok {
		return nil, fmt.Errorf("%w: the payload of %s is %d bytes, its target says %d", ErrMismatch, tp, fi.Size(), tf.Length)
	}
	sum, err := payload.HashFile(f, tf.Length)
	if err != nil {
		return nil, fmt.Errorf("failed to read the payload of %s: %w", tp, err)
	}
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, fmt.Errorf("%w: the payload of %s does not have the SHA-256 its target signs (the repository's copy is damaged)", ErrMismatch, tp)
	}
	dataOff := meta.PayloadDataOffset()
	ri.tree = io.NewSectionReader(f, 0, meta.Index.TreeLength)
	if meta.Install.Compression != release.CompressionZstd {
		if dataOff+meta.Installed.Length != tf.Length {
			return nil, fmt.Errorf("%w: the payload of %s is %d bytes, not its tree and image (%d + %d)", ErrMismatch, tp, tf.Length, dataOff, meta.Installed.Length)
		}
		ri.image = io.NewSectionReader(f, dataOff, meta.Installed.Length)
		return ri, nil
	}
	// The frames are independent zstd frames: one zstd stream of the image.
	if ri.scratch, err = durable.CreateTemp(fsys, scratchDir, 0o600); err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(io.NewSectionReader(f, dataOff, tf.Length-dataOff),
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithDecoderMaxWindow(payload.MaxZstdWindow))
	if err != nil {
		return nil, fmt.Errorf("failed to start zstd: %w", err)
	}
	defer dec.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(ri.scratch, h), CopyBufferSize)
	n, err := io.CopyBuffer(onlyWriter{bw}, onlyReader{io.LimitReader(dec, meta.Installed.Length+1)}, make([]byte, CopyBufferSize))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("failed to decompress the payload of %s: %w", tp, err)
	}
	if n != meta.Installed.Length || !bytes.Equal(h.Sum(nil), meta.Installed.SHA256[:]) {
		return nil, fmt.Errorf("%w: the payload of %s does not decompress to its signed installed image (%d bytes)", ErrMismatch, tp, n)
	}
	img, err := fsys.OpenFile(ri.scratch.Name(), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	ri.files = append(ri.files, img)
	ri.image = img
	return ri, nil
}

// checkDeltaBase applies the rules on a delta's base: a schema 2 release
// of the same product with the same salt, another version, older than the
// target unless the target permits downgrades.
func checkDeltaBase(target, base *release.Metadata) error {
	switch {
	case target.Index == nil:
		return fmt.Errorf("%w: %s %s cannot sign a delta (re-add it with schema 2)", ErrNoIndex, target.Product, target.Version)
	case base.Index == nil:
		return fmt.Errorf("%w: %s %s has no hash tree to make a delta against", ErrNoIndex, base.Product, base.Version)
	case base.Product.String() != target.Product.String():
		return fmt.Errorf("%w: a delta from %s to %s", ErrInvalidOptions, base.Product, target.Product)
	case base.Version.String() == target.Version.String():
		return fmt.Errorf("%w: a delta from %s %s to itself", ErrInvalidOptions, target.Product, target.Version)
	case !bytes.Equal(base.Index.Salt, target.Index.Salt):
		return fmt.Errorf("%w: %s %s and %s have different salts: no block of one can be matched in the other", ErrInvalidOptions, target.Product, base.Version, target.Version)
	case release.Compare(base.Version, target.Version) > 0 && !target.AllowDowngrade:
		return fmt.Errorf("%w: a delta from %s %s to the older %s: only a release signed with --allow-downgrade can be reached from a newer one", ErrDowngrade, target.Product, base.Version, target.Version)
	}
	return nil
}

// makeDelta writes the delta file that rebuilds target from base at path,
// crash-safely (a temp file in path's directory, fsynced, renamed, the
// directory fsynced): the tree stream, then the data stream. Before it is
// committed, the file is read back and applied to base's tree and image,
// and must give back target's exactly: what is signed is known to work.
func makeDelta(fsys durable.FS, path string, base, target *releaseImage) (*DeltaInfo, error) {
	dir := filepath.Dir(path)
	if err := fsys.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("failed to create %s: %w", dir, err)
	}
	p, err := durable.CreateTemp(fsys, dir, FileMode)
	if err != nil {
		return nil, err
	}
	defer p.Abort() // no-op after the commit
	bw := bufio.NewWriterSize(p, CopyBufferSize)
	bm, tm := base.meta, target.meta
	info := &DeltaInfo{Product: tm.Product.String(), Version: tm.Version.String(), From: bm.Version.String(), Path: path}
	if info.Tree, err = deltaenc.Create(bw, base.tree, bm.Index.TreeLength, target.tree, tm.Index.TreeLength, deltaenc.Options{}); err != nil {
		return nil, fmt.Errorf("failed to make the tree delta from %s: %w", info.From, err)
	}
	if info.Data, err = deltaenc.Create(bw, base.image, bm.Installed.Length, target.image, tm.Installed.Length, deltaenc.Options{}); err != nil {
		return nil, fmt.Errorf("failed to make the image delta from %s: %w", info.From, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("failed to write the delta: %w", err)
	}
	rf, err := fsys.OpenFile(p.Name(), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	size := info.Tree.Bytes + info.Data.Bytes
	streams := []applyCheck{
		{old: base.tree, oldLen: bm.Index.TreeLength, new: target.tree, newLen: tm.Index.TreeLength},
		{old: base.image, oldLen: bm.Installed.Length, new: target.image, newLen: tm.Installed.Length},
	}
	d, err := readDeltaFile(rf, size, streams)
	if err != nil {
		return nil, fmt.Errorf("internal error: the delta from %s does not rebuild %s: %w", info.From, info.Version, err)
	}
	d.From = bm.Version
	if d.Tree.HeaderSHA256 != info.Tree.HeaderSHA256 || d.Data.HeaderSHA256 != info.Data.HeaderSHA256 {
		return nil, fmt.Errorf("internal error: the delta file's headers are not the ones the encoder made")
	}
	if err := p.Commit(path); err != nil {
		return nil, err
	}
	info.Delta, info.Length = d, size
	return info, nil
}

// applyCheck is what readDeltaFile checks a stream against: applied to old
// (oldLen bytes) it must rebuild new (newLen bytes).
type applyCheck struct {
	old, new       io.ReaderAt
	oldLen, newLen int64
}

// readDeltaFile reads the two streams of a delta file of size bytes (tree,
// then data), parsing each header with the device's parser, and returns
// what the release metadata signs about them. The streams must fill the
// file exactly. With checks (one per stream), each stream is also applied
// and must rebuild the expected bytes; without, only the headers are read.
func readDeltaFile(f io.ReaderAt, size int64, checks []applyCheck) (release.Delta, error) {
	var d release.Delta
	off := int64(0)
	for i, st := range []*release.DeltaStream{&d.Tree, &d.Data} {
		name := [...]string{"tree", "data"}[i]
		hr, err := delta.NewReader(io.NewSectionReader(f, off, size-off))
		if err != nil {
			return d, fmt.Errorf("%s stream at byte %d: %w", name, off, err)
		}
		st.Length, st.HeaderLength, st.HeaderSHA256 = hr.StreamLength(), hr.HeaderLength(), hr.HeaderSHA256()
		if st.Length > size-off {
			return d, fmt.Errorf("%s stream at byte %d: %d bytes, the file has %d left", name, off, st.Length, size-off)
		}
		if checks != nil {
			c := checks[i]
			if hr.OldLength() != c.oldLen || hr.NewLength() != c.newLen {
				return d, fmt.Errorf("%s stream: made for %d -> %d bytes, want %d -> %d", name, hr.OldLength(), hr.NewLength(), c.oldLen, c.newLen)
			}
			if err := applyAndCompare(io.NewSectionReader(f, off, st.Length), c); err != nil {
				return d, fmt.Errorf("%s stream: %w", name, err)
			}
		}
		off += st.Length
	}
	if off != size {
		return d, fmt.Errorf("the streams end at byte %d of %d", off, size)
	}
	return d, nil
}

// applyAndCompare applies the delta stream r to c.old and compares every
// block it emits with c.new.
func applyAndCompare(r io.Reader, c applyCheck) error {
	dr, err := delta.NewReader(r)
	if err != nil {
		return err
	}
	want := make([]byte, delta.EmitBlocks*delta.BlockSize)
	var next int64
	err = dr.Apply(context.Background(), io.NewSectionReader(c.old, 0, c.oldLen), func(first int64, blocks []byte) error {
		if first != next {
			return fmt.Errorf("block %d emitted, want %d", first, next)
		}
		w := want[:len(blocks)]
		clear(w)
		off := first * delta.BlockSize
		n := min(int64(len(w)), c.newLen-off)
		if k, err := c.new.ReadAt(w[:n], off); int64(k) != n {
			return fmt.Errorf("failed to read the new image at %d: %w", off, err)
		}
		if !bytes.Equal(w, blocks) {
			return fmt.Errorf("blocks %d to %d differ from the new image", first, first+int64(len(blocks))/delta.BlockSize-1)
		}
		next = first + int64(len(blocks))/delta.BlockSize
		return nil
	})
	if err != nil {
		return err
	}
	if next != delta.Blocks(c.newLen) {
		return fmt.Errorf("%d blocks emitted, want %d", next, delta.Blocks(c.newLen))
	}
	return nil
}

// makeDeltas makes the delta file from each base in from to the release
// target (its metadata in the product role's metadata md), for release add
// and AddDelta. On error every delta file it made is removed; on success
// the caller removes them (remove) if it fails later.
func (r *Repo) makeDeltas(md *metadata.Metadata[metadata.TargetsType], target *releaseImage, from []string) (infos []*DeltaInfo, remove func(), err error) {
	tm := target.meta
	var made []*DeltaInfo
	remove = func() {
		for _, in := range made {
			durable.Remove(fsys, in.Path)
		}
	}
	defer func() {
		if err != nil {
			remove()
		}
	}()
	if len(tm.Deltas)+len(from) > release.MaxDeltas {
		return nil, remove, fmt.Errorf("%w: %s %s would sign %d deltas, the limit is %d (release.MaxDeltas)", ErrInvalidOptions, tm.Product, tm.Version, len(tm.Deltas)+len(from), release.MaxDeltas)
	}
	scratch := r.path(DeltasDir, filepath.FromSlash(tm.Product.String()), tm.Version.String())
	if err := fsys.MkdirAll(scratch, DirMode); err != nil {
		return nil, remove, fmt.Errorf("failed to create %s: %w", scratch, err)
	}
	for i, f := range from {
		fv, err := release.ParseVersion(f)
		if err != nil {
			return nil, remove, fmt.Errorf("%w: delta base %q: %w", ErrInvalidOptions, f, err)
		}
		f = fv.String()
		if tm.DeltaFrom(f) != nil || containsVersion(from[:i], f) {
			return nil, remove, fmt.Errorf("%w: %s %s already signs a delta from %s", ErrDeltaExists, tm.Product, tm.Version, f)
		}
		if f == tm.Version.String() {
			return nil, remove, fmt.Errorf("%w: a delta from %s %s to itself", ErrInvalidOptions, tm.Product, f)
		}
		btp := findVersion(md, f)
		if btp == "" {
			return nil, remove, fmt.Errorf("%w: no release %s %s to make a delta from", ErrNotFound, tm.Product, f)
		}
		base, err := r.openReleaseImage(fsys, btp, md.Signed.Targets[btp], scratch)
		if err != nil {
			return nil, remove, err
		}
		if err := checkDeltaBase(tm, base.meta); err != nil {
			base.close()
			return nil, remove, err
		}
		info, err := makeDelta(fsys, r.deltaPath(tm.Product, tm.Version.String(), f), base, target)
		base.close()
		if err != nil {
			return nil, remove, err
		}
		made = append(made, info)
	}
	return made, remove, nil
}

func containsVersion(list []string, v string) bool {
	for _, s := range list {
		if pv, err := release.ParseVersion(s); err == nil && pv.String() == v {
			return true
		}
	}
	return false
}

// checkDeltaBases checks, before a large image is streamed, that every
// base in from names a release of md a delta to meta may be made from.
func checkDeltaBases(md *metadata.Metadata[metadata.TargetsType], meta *release.Metadata, from []string) error {
	if len(from) == 0 {
		return nil
	}
	if meta.Index == nil {
		return fmt.Errorf("%w: a schema 1 release cannot sign deltas (--delta-from needs schema 2)", ErrNoIndex)
	}
	if len(from) > release.MaxDeltas {
		return fmt.Errorf("%w: %d delta bases, the limit is %d (release.MaxDeltas)", ErrInvalidOptions, len(from), release.MaxDeltas)
	}
	for i, f := range from {
		fv, err := release.ParseVersion(f)
		if err != nil {
			return fmt.Errorf("%w: delta base %q: %w", ErrInvalidOptions, f, err)
		}
		if containsVersion(from[:i], fv.String()) {
			return fmt.Errorf("%w: delta base %s given twice", ErrInvalidOptions, fv)
		}
		if fv.String() == meta.Version.String() {
			return fmt.Errorf("%w: a delta from %s %s to itself", ErrInvalidOptions, meta.Product, fv)
		}
		if meta.DeltaFrom(fv.String()) != nil {
			return fmt.Errorf("%w: %s %s already signs a delta from %s", ErrDeltaExists, meta.Product, meta.Version, fv)
		}
		tp := findVersion(md, fv.String())
		if tp == "" {
			return fmt.Errorf("%w: no release %s %s to make a delta from", ErrNotFound, meta.Product, fv)
		}
		tf := md.Signed.Targets[tp]
		if tf.Custom == nil {
			return fmt.Errorf("%w: target %q has no airlock metadata", ErrInvalidMetadata, tp)
		}
		bm, err := release.ParseCustom(*tf.Custom)
		if err != nil {
			return fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
		}
		if err := checkDeltaBase(meta, bm); err != nil {
			return err
		}
	}
	return nil
}

// deltasFor makes the delta files from each base in from to the release at
// target path tp (target file tf, in md or about to be), reading its image
// and tree from its payload in the repository.
func (r *Repo) deltasFor(md *metadata.Metadata[metadata.TargetsType], tp string, tf *metadata.TargetFiles, from []string) ([]*DeltaInfo, func(), error) {
	p, v, _, err := release.ParseTargetPath(tp)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	scratch := r.path(DeltasDir, filepath.FromSlash(p.String()), v.String())
	if err := fsys.MkdirAll(scratch, DirMode); err != nil {
		return nil, nil, fmt.Errorf("failed to create %s: %w", scratch, err)
	}
	target, err := r.openReleaseImage(fsys, tp, tf, scratch)
	if err != nil {
		return nil, nil, err
	}
	defer target.close()
	return r.makeDeltas(md, target, from)
}
