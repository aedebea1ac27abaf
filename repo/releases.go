package repo

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"github.com/airlockfw/airlock/provenance"
	"github.com/airlockfw/airlock/release"
	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// CopyBufferSize is the buffer size of the single streaming pass over an
// image in AddRelease.
const CopyBufferSize = 1 << 20

// Compression values of ReleaseOptions.Compress.
const (
	CompressNone = ""
	CompressZstd = "zstd"
)

// ReleaseOptions describes a release to add.
type ReleaseOptions struct {
	Product         string   // e.g. "acme/router-x1"; must be delegated
	ImagePath       string   // the raw image; streamed once, never held in memory
	Version         string   // semantic version
	SecurityVersion uint32   // anti-rollback epoch
	Models          []string // device models (at least one)
	HWRev           string   // hardware revision range, "" for any
	Channel         string   // "" for release.DefaultChannel
	Depends         []string // "COMPONENT>=VERSION"
	Compress        string   // CompressNone or CompressZstd
	// Schema is the release metadata schema: 0 or release.SchemaVersion
	// (2: the block-indexed payload devices verify before they write) or
	// release.SchemaV1 (a plain payload, for devices older than schema 2).
	Schema int
	// FrameSize is the installed bytes per zstd frame of a compressed
	// schema 2 payload (0: payload.DefaultFrameSize).
	FrameSize int64
	Notes     string
	// AllowDowngrade permits a version not greater than the newest release
	// of the product; it is recorded (signed) in the release metadata.
	AllowDowngrade bool
	// Copy has no effect: the image is always copied into the repository
	// (or reflinked, a copy-on-write clone, where the filesystem supports
	// it), never shared with the user's file.
	//
	// Deprecated: kept so that callers that set it still compile.
	Copy bool
	// DeltaFrom lists older releases of the product (published or staged,
	// schema 2) to sign deltas from (at most release.MaxDeltas): for each,
	// a delta file is made in the repository (REPO/deltas/...) and its
	// streams are signed into the release's metadata, so that a device
	// running that release can install this one from a delta bundle
	// (CreateBundleWith, BundleOptions.DeltaFrom).
	DeltaFrom []string
	// Signers are keys of the product role that approve the release now
	// (at least one). Further approvals: SignPending, SignPendingFile.
	Signers []crypto.Signer
	// Provenance is the path of the build's provenance: a DSSE envelope
	// of an in-toto Statement v1 with a SLSA provenance v1 predicate whose
	// subject has the image's SHA-256 (package provenance). It is checked
	// against the product's policy (SetProvenancePolicy), stored beside the
	// release and bound in its signed metadata. "" for none: refused when
	// the product has a policy, and Publish refuses such a release in a
	// prod repository.
	Provenance string
}

// ReleaseInfo describes one release of a product role.
type ReleaseInfo struct {
	Product    string
	Version    string
	TargetPath string
	Length     int64  // transport length (what devices download)
	SHA256     string // hex SHA-256 of the transport file
	Metadata   *release.Metadata
	// Published is false for a release only in staged metadata.
	Published bool
	// Deltas are the delta files AddRelease made (ReleaseOptions.DeltaFrom).
	Deltas []*DeltaInfo
	// Signatures and Threshold are the valid signatures on the metadata
	// that holds the release (staged metadata for unpublished releases).
	Signatures, Threshold int
	// Provenance is the provenance AddRelease checked and stored (nil:
	// none was given).
	Provenance *provenance.Attestation
}

func productRole(product string) (release.Product, string, error) {
	p, err := release.ParseProduct(product)
	if err != nil {
		return release.Product{}, "", fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return p, p.RoleName(), nil
}

// delegation returns the product role's keys from the current targets.
func (r *Repo) delegation(p release.Product) (roleKeys, error) {
	targets, err := r.currentTargets()
	if err != nil {
		return roleKeys{}, err
	}
	rk, _, ok := delegatedRoleKeys(targets, p.RoleName())
	if !ok {
		return roleKeys{}, fmt.Errorf("%w: %s (run 'airlock repo delegate' first)", ErrNoDelegation, p)
	}
	return rk, nil
}

// addRelease is AddRelease without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) addRelease(opts ReleaseOptions) (*ReleaseInfo, error) {
	p, role, err := productRole(opts.Product)
	if err != nil {
		return nil, err
	}
	v, err := release.ParseVersion(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if opts.Compress != CompressNone && opts.Compress != CompressZstd {
		return nil, fmt.Errorf("%w: compression %q (want none or zstd)", ErrInvalidOptions, opts.Compress)
	}
	schema := opts.Schema
	switch schema {
	case 0:
		schema = release.SchemaVersion
	case release.SchemaV1, release.SchemaVersion:
	default:
		return nil, fmt.Errorf("%w: schema %d (want %d or %d)", ErrInvalidOptions, schema, release.SchemaV1, release.SchemaVersion)
	}
	frameSize := int64(0)
	if schema != release.SchemaV1 && opts.Compress == CompressZstd {
		if frameSize = opts.FrameSize; frameSize == 0 {
			frameSize = payload.DefaultFrameSize
		}
		if frameSize < release.MinFrameSize || frameSize > release.MaxFrameSize || frameSize%release.IndexBlockSize != 0 {
			return nil, fmt.Errorf("%w: frame size %d (want a multiple of %d from %d to %d)", ErrInvalidOptions, frameSize, release.IndexBlockSize, release.MinFrameSize, release.MaxFrameSize)
		}
	} else if opts.FrameSize != 0 {
		return nil, fmt.Errorf("%w: a frame size is for compressed schema 2 releases only", ErrInvalidOptions)
	}
	if len(opts.Signers) == 0 {
		return nil, fmt.Errorf("%w: at least one product key must sign", ErrInvalidOptions)
	}
	rk, err := r.delegation(p)
	if err != nil {
		return nil, err
	}
	for _, s := range opts.Signers {
		if _, err := rk.authorize(s, role); err != nil {
			return nil, err
		}
	}
	meta := &release.Metadata{
		Schema: schema, Product: p, Models: opts.Models, Version: v,
		SecurityVersion: opts.SecurityVersion, Channel: opts.Channel, Notes: opts.Notes,
		AllowDowngrade: opts.AllowDowngrade, Created: r.now(), Environment: r.Environment(),
		Install: release.Install{Kind: release.InstallRaw, Compression: release.CompressionNone},
	}
	if opts.HWRev != "" {
		if meta.HWRev, err = release.ParseHWRange(opts.HWRev); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	}
	for _, d := range opts.Depends {
		dep, err := release.ParseDependency(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		meta.Depends = append(meta.Depends, dep)
	}
	fileName := filepath.Base(opts.ImagePath)
	if opts.Compress == CompressZstd {
		fileName += ".zst"
		meta.Install.Compression = release.CompressionZstd
	}
	targetPath, err := release.TargetPath(p, v, fileName)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}

	md, err := r.nextTargetsVersion(role, r.cfg.Expires.Product)
	if err != nil {
		return nil, err
	}
	newest := release.Version{}
	for tp := range md.Signed.Targets {
		_, tv, _, err := release.ParseTargetPath(tp)
		if err != nil {
			continue
		}
		if tv.String() == v.String() {
			return nil, fmt.Errorf("%w: %s %s (%s)", ErrDuplicate, p, v, tp)
		}
		if newest.IsZero() || release.Compare(tv, newest) > 0 {
			newest = tv
		}
	}
	if !newest.IsZero() && release.Compare(v, newest) <= 0 && !opts.AllowDowngrade {
		return nil, fmt.Errorf("%w: %s %s is not newer than %s (use --allow-downgrade to sign a downgrade)", ErrDowngrade, p, v, newest)
	}
	// Validate the metadata before streaming a large image.
	meta.Installed = release.Installed{Length: 1, SHA256: [32]byte{1}}
	var salt []byte
	if schema != release.SchemaV1 {
		salt = ProductSalt(p)
		meta.Index = &release.Index{Salt: salt, Root: [32]byte{1}}
		if frameSize > 0 {
			meta.Index.FrameSize, meta.Index.Frames, meta.Index.FrameTable = frameSize, 1, [32]byte{1}
		}
	}
	if err := meta.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if err := checkDeltaBases(md, meta, opts.DeltaFrom); err != nil {
		return nil, err
	}
	prov, err := r.readProvenance(p, opts.Provenance)
	if err != nil {
		return nil, err
	}

	st, err := r.streamImage(opts.ImagePath, path.Dir(targetPath), fileName, layout{compress: opts.Compress == CompressZstd, indexed: schema != release.SchemaV1, salt: salt, frameSize: frameSize})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			durable.Remove(fsys, st.path)
		}
	}()
	meta.Installed = release.Installed{Length: st.rawLength, SHA256: st.rawSHA256}
	if prov != nil {
		pp, err := prov.stage(r, meta)
		if err != nil {
			return nil, err
		}
		defer func() {
			if !ok {
				removeProvenance(pp)
			}
		}()
	}
	if b := st.index; b != nil {
		meta.Index = &release.Index{Salt: salt, Root: b.Root, TreeLength: b.TreeLength, FrameSize: b.FrameSize, Frames: b.Frames, FrameTable: b.FrameTable}
	}
	custom, err := release.MarshalCustom(meta)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	tf := &metadata.TargetFiles{
		Length: st.length,
		Hashes: metadata.Hashes{"sha256": st.sha256[:]},
		Custom: &custom,
		Path:   targetPath,
	}
	var deltas []*DeltaInfo
	if len(opts.DeltaFrom) > 0 {
		// From the staged payload, not from the user's file.
		var remove func()
		if deltas, remove, err = r.deltasFor(md, targetPath, tf, opts.DeltaFrom); err != nil {
			return nil, err
		}
		defer func() {
			if !ok {
				remove()
			}
		}()
		for _, d := range deltas {
			meta.Deltas = append(meta.Deltas, d.Delta)
		}
		if err := meta.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		if custom, err = release.MarshalCustom(meta); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		tf.Custom = &custom
	}
	md.Signed.Targets[targetPath] = tf
	if err := signWith(md, opts.Signers, rk, role); err != nil {
		return nil, err
	}
	if err := writeStaged(r, role, md); err != nil {
		return nil, err
	}
	ok = true
	have, _ := countValid(md, rk)
	info := &ReleaseInfo{
		Product: p.String(), Version: v.String(), TargetPath: targetPath, Length: st.length,
		SHA256: hex.EncodeToString(st.sha256[:]), Metadata: meta, Signatures: have, Threshold: rk.threshold, Deltas: deltas,
	}
	if prov != nil {
		info.Provenance = prov.att
	}
	return info, nil
}

type streamed struct {
	path      string
	length    int64
	sha256    [32]byte
	rawLength int64
	rawSHA256 [32]byte
	index     *payload.Built // schema 2
}

// layout is how a payload is laid out: compressed or not, and for schema
// 2 indexed with the product's salt and frame size.
type layout struct {
	compress  bool
	indexed   bool
	salt      []byte
	frameSize int64
}

// ProductSalt is the dm-verity salt of every schema 2 release of product
// p: fixed per product, so that a block unchanged between two releases has
// the same digest in both trees and a device can reuse it (delta updates).
// It is not secret.
func ProductSalt(p release.Product) []byte {
	sum := sha256.Sum256([]byte("airlock verity salt\x00" + p.String()))
	return sum[:]
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// streamImage adds the image at src to staging/targets/<dir>/ under its
// consistent-snapshot name <sha256>.<fileName> (stageImage). The repository
// never shares the user's file: the staged payload is an independent copy
// (or a copy-on-write reflink), so rebuilding the image in place later does
// not reach a staged or published release, and the file's mode is left
// alone. An image that changes (size or modification time) while it is added
// is refused: the copy would hold a mix of two builds.
func (r *Repo) streamImage(src, dir, fileName string, lay layout) (*streamed, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("failed to open image: %w", err)
	}
	defer in.Close()
	before, err := in.Stat()
	if err != nil || !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: image %s is not a regular file", ErrInvalidOptions, src)
	}
	outDir := r.path(StagingDir, TargetsDir, filepath.FromSlash(dir))
	if err := fsys.MkdirAll(outDir, DirMode); err != nil {
		return nil, fmt.Errorf("failed to create %s: %w", outDir, err)
	}
	progress := io.Discard
	if r.opts.Progress != nil {
		progress = r.opts.Progress(before.Size())
	}
	var st *streamed
	if lay.indexed {
		st, err = stageIndexed(fsys, in, before.Size(), outDir, fileName, lay, progress)
	} else {
		st, err = stageImage(fsys, in, outDir, fileName, lay.compress, progress)
	}
	if err != nil {
		if errors.Is(err, errEmptyImage) {
			return nil, fmt.Errorf("%w: image %s is empty", ErrInvalidOptions, src)
		}
		return nil, err
	}
	after, err := in.Stat()
	if err == nil && (after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime())) {
		err = fmt.Errorf("image %s changed while it was being added; add it again once it is rebuilt", src)
	}
	if err != nil {
		durable.Remove(fsys, st.path)
		return nil, err
	}
	return st, nil
}

// errEmptyImage is returned by stageImage for an image of zero bytes.
var errEmptyImage = errors.New("empty image")

// stageImage writes the image read from in into outDir crash-safely
// (durable.CreateTemp: a temp file, fsynced, renamed to
// <sha256>.<fileName>, directory fsynced), so after a power cut the final
// name holds the whole payload or does not exist. Uncompressed, it first
// tries a reflink (a copy-on-write clone, where the filesystem has them)
// and hashes the clone; otherwise, and when compressing, it copies in one
// streaming pass with a CopyBufferSize buffer, hashing the bytes it writes.
// Either way the digests are of the repository's bytes, not of a file the
// user can still change. The raw bytes are also written to progress.
func stageImage(fsys durable.FS, in io.Reader, outDir, fileName string, compress bool, progress io.Writer) (*streamed, error) {
	f, err := durable.CreateTemp(fsys, outDir, FileMode)
	if err != nil {
		return nil, err
	}
	defer f.Abort() // no-op after the commit
	var st *streamed
	if !compress {
		st, err = cloneImage(f, in, progress)
		if err != nil {
			return nil, err
		}
	}
	if st == nil {
		if st, err = copyImage(f, in, compress, progress); err != nil {
			return nil, err
		}
	}
	if st.rawLength == 0 {
		return nil, errEmptyImage
	}
	st.path = filepath.Join(outDir, hex.EncodeToString(st.sha256[:])+"."+fileName)
	if err := f.Commit(st.path); err != nil {
		return nil, err
	}
	return st, nil
}

// stageIndexed writes the schema 2 payload of the image (length bytes
// read from in) into outDir crash-safely, as stageImage does: the tree,
// the frame table and the frames (or the raw image), then hashes the file
// for its TUF target digest.
func stageIndexed(fsys durable.FS, in io.Reader, length int64, outDir, fileName string, lay layout, progress io.Writer) (*streamed, error) {
	if length == 0 {
		return nil, errEmptyImage
	}
	f, err := durable.CreateTemp(fsys, outDir, FileMode)
	if err != nil {
		return nil, err
	}
	defer f.Abort() // no-op after the commit
	b, err := payload.BuildIndexed(f.File(), in, length, payload.BuildOptions{Salt: lay.salt, FrameSize: lay.frameSize, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("failed to build the payload: %w", err)
	}
	rf, err := fsys.OpenFile(f.Name(), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to read the staged payload: %w", err)
	}
	sum, err := payload.HashFile(rf, b.Length)
	rf.Close()
	if err != nil {
		return nil, fmt.Errorf("failed to read the staged payload: %w", err)
	}
	st := &streamed{length: b.Length, sha256: sum, rawLength: b.InstalledLength, rawSHA256: b.InstalledSHA256, index: b}
	st.path = filepath.Join(outDir, hex.EncodeToString(st.sha256[:])+"."+fileName)
	if err := f.Commit(st.path); err != nil {
		return nil, err
	}
	return st, nil
}

// cloneImage reflinks in into the temp file f when both are files of a
// filesystem that supports it, and hashes what f then holds. It returns nil
// and no error when no reflink could be made (f is left empty).
func cloneImage(f *durable.Pending, in io.Reader, progress io.Writer) (*streamed, error) {
	src, ok := in.(*os.File)
	if !ok {
		return nil, nil
	}
	dst, ok := f.File().(*os.File)
	if !ok || !reflink(dst, src) {
		return nil, nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(onlyWriter{io.MultiWriter(h, progress)}, onlyReader{io.NewSectionReader(dst, 0, 1<<62)}, make([]byte, CopyBufferSize))
	if err != nil {
		return nil, fmt.Errorf("failed to read the staged image: %w", err)
	}
	st := &streamed{length: n, rawLength: n}
	copy(st.sha256[:], h.Sum(nil))
	st.rawSHA256 = st.sha256
	return st, nil
}

// copyImage copies in into f, compressing it with zstd when asked, and
// hashes the raw bytes and the bytes written.
func copyImage(f *durable.Pending, in io.Reader, compress bool, progress io.Writer) (*streamed, error) {
	outHash := sha256.New()
	bw := bufio.NewWriterSize(f, CopyBufferSize)
	out := &countingWriter{w: io.MultiWriter(bw, outHash)}
	rawHash := outHash
	var dst io.Writer = out
	var enc *zstd.Encoder
	if compress {
		rawHash = sha256.New()
		// The window must fit the device decoder's bound (payload.MaxZstdWindow).
		var err error
		enc, err = zstd.NewWriter(out, zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(payload.MaxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("failed to start zstd: %w", err)
		}
		dst = io.MultiWriter(enc, rawHash)
	}
	buf := make([]byte, CopyBufferSize)
	raw, err := io.CopyBuffer(onlyWriter{io.MultiWriter(dst, progress)}, onlyReader{in}, buf)
	if err != nil {
		return nil, fmt.Errorf("failed to copy image: %w", err)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("failed to compress image: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("failed to write image: %w", err)
	}
	st := &streamed{length: out.n, rawLength: raw}
	copy(st.sha256[:], outHash.Sum(nil))
	copy(st.rawSHA256[:], sumOf(rawHash))
	return st, nil
}

func sumOf(h hash.Hash) []byte { return h.Sum(nil) }

// onlyReader and onlyWriter hide ReaderFrom/WriterTo so that io.CopyBuffer
// uses the 1 MiB buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// payloadPath returns where the payload of a target is: staged or
// published (consistent-snapshot name), or an error if neither exists.
func (r *Repo) payloadPath(targetPath string, tf *metadata.TargetFiles) (string, bool, error) {
	h, ok := tf.Hashes["sha256"]
	if !ok {
		return "", false, fmt.Errorf("%w: target %q has no sha256 hash", ErrInvalidMetadata, targetPath)
	}
	dir, base := path.Split(targetPath)
	name := filepath.FromSlash(dir) + hex.EncodeToString(h) + "." + base
	staged := r.path(StagingDir, TargetsDir, name)
	if _, err := os.Stat(staged); err == nil {
		return staged, true, nil
	}
	pub := r.path(PublicDir, TargetsDir, name)
	if _, err := os.Stat(pub); err != nil {
		return "", false, fmt.Errorf("%w: payload of %q: %w", ErrNotFound, targetPath, err)
	}
	return pub, false, nil
}

// signPending is SignPending without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) signPending(product, version string, signer crypto.Signer, shown string) (have, need int, err error) {
	p, role, err := productRole(product)
	if err != nil {
		return 0, 0, err
	}
	rk, err := r.delegation(p)
	if err != nil {
		return 0, 0, err
	}
	if _, err := rk.authorize(signer, role); err != nil {
		return 0, 0, err
	}
	md, err := r.stagedTargetsRole(role)
	if err != nil {
		return 0, 0, err
	}
	if md == nil {
		if md, err = r.nextTargetsVersion(role, r.cfg.Expires.Product); err != nil {
			return 0, 0, err
		}
		if md.Signed.Version == 1 {
			return 0, 0, fmt.Errorf("%w: no releases of %s to sign", ErrNotFound, p)
		}
	}
	if version != "" && findVersion(md, version) == "" {
		return 0, 0, fmt.Errorf("%w: release %s %s is not in the pending metadata of %s", ErrNotFound, p, version, role)
	}
	if err := checkShown(md.Signed, shown); err != nil {
		return 0, 0, err
	}
	if err := tufsign.Sign(md, signer); err != nil {
		return 0, 0, err
	}
	if err := writeStaged(r, role, md); err != nil {
		return 0, 0, err
	}
	have, err = countValid(md, rk)
	return have, rk.threshold, err
}

// findVersion returns the target path of version in md, or "".
func findVersion(md *metadata.Metadata[metadata.TargetsType], version string) string {
	for tp := range md.Signed.Targets {
		if _, v, _, err := release.ParseTargetPath(tp); err == nil && v.String() == version {
			return tp
		}
	}
	return ""
}

// Pending returns the valid signatures on the product role's staged
// metadata and the role's threshold. have is 0 when nothing is staged.
func (r *Repo) Pending(product string) (have, need int, err error) {
	p, role, err := productRole(product)
	if err != nil {
		return 0, 0, err
	}
	rk, err := r.delegation(p)
	if err != nil {
		return 0, 0, err
	}
	md, err := r.stagedTargetsRole(role)
	if err != nil || md == nil {
		return 0, rk.threshold, err
	}
	have, err = countValid(md, rk)
	return have, rk.threshold, err
}

// SignPendingFile signs a pending metadata file carried from the repository
// machine (a copy of REPO/staging/<role>.json) in place, without access to
// the repository. The repository checks the signature when the file comes
// back (ImportPending). It returns the key ID that signed. shown, if not
// empty, is the SignedSHA256 of the DescribePendingFile summary the holder
// approved: a file whose signed content changed since is refused with
// ErrChanged.
func SignPendingFile(path string, signer crypto.Signer, shown string) (keyID string, err error) {
	data, err := readLimited(path, MaxMetadataSize)
	if err != nil {
		return "", err
	}
	typ, err := metadataType(data)
	if err != nil {
		return "", err
	}
	var out []byte
	switch typ {
	case metadata.ROOT:
		md, err := parseMD[metadata.RootType](data)
		if err != nil {
			return "", err
		}
		if err := checkShown(md.Signed, shown); err != nil {
			return "", err
		}
		if err := tufsign.Sign(md, signer); err != nil {
			return "", err
		}
		out, err = md.ToBytes(true)
		if err != nil {
			return "", err
		}
	case metadata.TARGETS:
		md, err := parseMD[metadata.TargetsType](data)
		if err != nil {
			return "", err
		}
		if err := checkShown(md.Signed, shown); err != nil {
			return "", err
		}
		if err := tufsign.Sign(md, signer); err != nil {
			return "", err
		}
		out, err = md.ToBytes(true)
		if err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("%w: %s metadata is signed by online keys at publish, not as a pending file", ErrInvalidMetadata, typ)
	}
	if err := writeFile(path, out); err != nil {
		return "", err
	}
	return keys.KeyID(signer.Public())
}

func metadataType(data []byte) (string, error) {
	var env struct {
		Signed struct {
			Type string `json:"_type"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	return env.Signed.Type, nil
}

// importPending is ImportPending without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) importPending(path string) (role string, have, need int, err error) {
	data, err := readLimited(path, MaxMetadataSize)
	if err != nil {
		return "", 0, 0, err
	}
	typ, err := metadataType(data)
	if err != nil {
		return "", 0, 0, err
	}
	if typ == metadata.ROOT {
		return r.importRoot(data)
	}
	if typ != metadata.TARGETS {
		return "", 0, 0, fmt.Errorf("%w: type %q cannot be pending", ErrInvalidMetadata, typ)
	}
	carried, err := parseMD[metadata.TargetsType](data)
	if err != nil {
		return "", 0, 0, err
	}
	want, err := canonjson.Marshal(carried.Signed)
	if err != nil {
		return "", 0, 0, err
	}
	names, err := r.stagedRoles()
	if err != nil {
		return "", 0, 0, err
	}
	for _, name := range names {
		if name == metadata.ROOT {
			continue
		}
		staged, err := r.stagedTargetsRole(name)
		if err != nil {
			return "", 0, 0, err
		}
		got, err := canonjson.Marshal(staged.Signed)
		if err != nil || !bytes.Equal(got, want) {
			continue
		}
		rk, err := r.keysForTargetsRole(name)
		if err != nil {
			return "", 0, 0, err
		}
		valid, err := validSignatures(carried, rk)
		if err != nil {
			return "", 0, 0, err
		}
		merged := mergeSignatures(staged.Signatures, valid)
		staged.Signatures = merged
		if err := writeStaged(r, name, staged); err != nil {
			return "", 0, 0, err
		}
		have, err := countValid(staged, rk)
		return name, have, rk.threshold, err
	}
	return "", 0, 0, fmt.Errorf("%w: no staged metadata has the same signed content as %s (was it changed after it was carried away?)", ErrMismatch, path)
}

func mergeSignatures(have, add []metadata.Signature) []metadata.Signature {
	out := append([]metadata.Signature(nil), have...)
	for _, s := range add {
		replaced := false
		for i := range out {
			if out[i].KeyID == s.KeyID {
				out[i] = s
				replaced = true
			}
		}
		if !replaced {
			out = append(out, s)
		}
	}
	return out
}

// keysForTargetsRole returns who may sign a targets-type role: the root's
// targets role, or the delegation in the current targets.
func (r *Repo) keysForTargetsRole(name string) (roleKeys, error) {
	if name == metadata.TARGETS {
		root, err := r.currentRoot()
		if err != nil {
			return roleKeys{}, err
		}
		return rootRoleKeys(root, metadata.TARGETS)
	}
	targets, err := r.currentTargets()
	if err != nil {
		return roleKeys{}, err
	}
	rk, _, ok := delegatedRoleKeys(targets, name)
	if !ok {
		return roleKeys{}, fmt.Errorf("%w: role %q", ErrNoDelegation, name)
	}
	return rk, nil
}

// stagedRoles lists the roles with staged metadata.
func (r *Repo) stagedRoles() ([]string, error) {
	ents, err := os.ReadDir(r.path(StagingDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Releases lists the releases of product ("" for all products), published
// and pending, oldest version first.
func (r *Repo) Releases(product string) ([]ReleaseInfo, error) {
	targets, err := r.currentTargets()
	if err != nil {
		return nil, err
	}
	var out []ReleaseInfo
	if targets.Signed.Delegations == nil {
		return nil, nil
	}
	for _, d := range targets.Signed.Delegations.Roles {
		rk, _, _ := delegatedRoleKeys(targets, d.Name)
		pub, err := r.PublishedRole(d.Name)
		if err != nil {
			return nil, err
		}
		staged, err := r.stagedTargetsRole(d.Name)
		if err != nil {
			return nil, err
		}
		var list []ReleaseInfo
		add := func(md *metadata.Metadata[metadata.TargetsType], published bool) {
			have, _ := countValid(md, rk)
			for tp, tf := range md.Signed.Targets {
				p, v, _, err := release.ParseTargetPath(tp)
				if err != nil || (product != "" && p.String() != product) {
					continue
				}
				if !published && pub != nil {
					if _, ok := pub.Signed.Targets[tp]; ok {
						continue
					}
				}
				info := ReleaseInfo{Product: p.String(), Version: v.String(), TargetPath: tp, Length: tf.Length,
					SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Published: published, Signatures: have, Threshold: rk.threshold}
				if tf.Custom != nil {
					info.Metadata, _ = release.ParseCustom(*tf.Custom)
				}
				list = append(list, info)
			}
		}
		if pub != nil {
			add(pub, true)
		}
		if staged != nil {
			add(staged, false)
		}
		sort.Slice(list, func(i, j int) bool {
			vi, _ := release.ParseVersion(list[i].Version)
			vj, _ := release.ParseVersion(list[j].Version)
			return release.Compare(vi, vj) < 0
		})
		out = append(out, list...)
	}
	return out, nil
}
