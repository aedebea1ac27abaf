package repofiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/airlockfw/airlock/internal/objstore"
)

// Limits of Push.
const (
	// MaxPushMetadataSize bounds timestamp.json and root.json, which Push
	// reads into memory before anything else.
	MaxPushMetadataSize = 32 << 20
	// MaxPushObjects bounds the objects under metadata/ and under targets/
	// of the source and the destination.
	MaxPushObjects = 1_000_000
)

// PushResult says what Push did.
type PushResult struct {
	// Uploaded and Skipped list object names in the order Push handled
	// them; Skipped ones were already present with the same SHA-256.
	Uploaded, Skipped []string
	// Bytes is the total size uploaded.
	Bytes int64
}

// Push copies the repository's public files from src (REPO/public as a
// store: metadata/... and targets/...) to dst, in an order in which a
// reader of dst (devices, a CDN) never sees metadata naming a file that is
// not there yet (TUF client workflow, consistent snapshots):
//
//  1. timestamp.json, root.json and log/checkpoint are read from src first, so a
//     concurrent `airlock repo publish` or `repo timestamp` cannot make
//     Push upload a timestamp naming a snapshot it did not copy;
//  2. every payload (targets/...), then the transparency log (log/...:
//     tiles, entry bundles, release index files and history; its
//     checkpoint, read in step 1, last), so the log covers every release
//     the new metadata names;
//  3. versioned metadata: delegated roles and targets (N.<role>.json), then
//     N.snapshot.json, then N.root.json in increasing N;
//  4. root.json, then timestamp.json last.
//
// Each object is uploaded with its SHA-256 (verified as it streams, see
// objstore.Store.Put), a content type and a Cache-Control header
// (CacheControl: immutable for consistent-snapshot names), and skipped
// when dst already holds the same content: Push is idempotent and a second
// run uploads nothing. Nothing is deleted from dst: old consistent
// snapshots stay readable for devices that are mid-update.
func Push(ctx context.Context, src, dst objstore.Store) (*PushResult, error) {
	var head [][2]string // name, content read first
	ts, err := readSmall(ctx, src, "metadata/timestamp.json")
	if err != nil {
		return nil, err
	}
	root, err := readSmall(ctx, src, "metadata/root.json")
	if err != nil && !errors.Is(err, objstore.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		head = append(head, [2]string{"metadata/root.json", string(root)})
	}
	head = append(head, [2]string{"metadata/timestamp.json", string(ts)})
	checkpoint, err := readSmall(ctx, src, "log/checkpoint")
	hasLog := err == nil
	if err != nil && !errors.Is(err, objstore.ErrNotExist) {
		return nil, err
	}

	targets, err := src.List(ctx, "targets/", MaxPushObjects)
	if err != nil {
		return nil, err
	}
	metas, err := src.List(ctx, "metadata/", MaxPushObjects)
	if err != nil {
		return nil, err
	}
	var logs []objstore.Info
	if hasLog {
		if logs, err = src.List(ctx, "log/", MaxPushObjects); err != nil {
			return nil, err
		}
	}
	order := make([]string, 0, len(targets)+len(logs)+len(metas))
	for _, t := range targets {
		order = append(order, t.Name)
	}
	for _, l := range logs {
		if l.Name != "log/checkpoint" {
			order = append(order, l.Name)
		}
	}
	res := &PushResult{}
	for _, name := range order {
		if err := pushObject(ctx, src, dst, name, res); err != nil {
			return res, err
		}
	}
	if hasLog {
		if err := pushBytes(ctx, dst, "log/checkpoint", checkpoint, res); err != nil {
			return res, err
		}
	}
	for _, name := range metadataOrder(metas) {
		if err := pushObject(ctx, src, dst, name, res); err != nil {
			return res, err
		}
	}
	for _, h := range head {
		if err := pushBytes(ctx, dst, h[0], []byte(h[1]), res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// metadataOrder sorts the metadata objects other than root.json and
// timestamp.json: roles and targets, then snapshots, then roots by
// version.
func metadataOrder(metas []objstore.Info) []string {
	rank := func(name string) (int, int64) {
		base := path.Base(name)
		v, role, ok := strings.Cut(strings.TrimSuffix(base, ".json"), ".")
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case !ok || err != nil: // unversioned (e.g. snapshot.json): before its versions' readers
			return 0, 0
		case role == "snapshot":
			return 1, n
		case role == "root":
			return 2, n
		default:
			return 0, n
		}
	}
	var out []string
	for _, m := range metas {
		if m.Name != "metadata/timestamp.json" && m.Name != "metadata/root.json" {
			out = append(out, m.Name)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ra, va := rank(a)
		rb, vb := rank(b)
		if ra != rb {
			return ra - rb
		}
		if va != vb {
			if va < vb {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return out
}

func readSmall(ctx context.Context, s objstore.Store, name string) ([]byte, error) {
	o, err := s.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	data, err := io.ReadAll(io.LimitReader(o, MaxPushMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", name, err)
	}
	if len(data) > MaxPushMetadataSize {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes (MaxPushMetadataSize)", objstore.ErrTooLarge, name, MaxPushMetadataSize)
	}
	return data, nil
}

func contentType(name string) string {
	if strings.HasPrefix(name, "metadata/") {
		return "application/json"
	}
	return "application/octet-stream"
}

// same reports whether dst holds name with this size and SHA-256 (hashing
// dst's object when the backend does not record digests).
func same(ctx context.Context, dst objstore.Store, name string, size int64, sum string) (bool, error) {
	info, err := dst.Stat(ctx, name)
	if errors.Is(err, objstore.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.Size != size {
		return false, nil
	}
	if info.SHA256 != "" {
		return info.SHA256 == sum, nil
	}
	o, err := dst.Open(ctx, name)
	if err != nil {
		return false, err
	}
	defer o.Close()
	_, got, err := objstore.HashReader(o, objstore.MaxObjectSize)
	if err != nil {
		return false, err
	}
	return got == sum, nil
}

func pushObject(ctx context.Context, src, dst objstore.Store, name string, res *PushResult) error {
	o, err := src.Open(ctx, name)
	if err != nil {
		return err
	}
	defer o.Close()
	size, sum, err := objstore.HashReader(o, objstore.MaxObjectSize)
	if err != nil {
		return fmt.Errorf("failed to hash %s: %w", name, err)
	}
	return put(ctx, dst, name, o, size, sum, res)
}

func pushBytes(ctx context.Context, dst objstore.Store, name string, data []byte, res *PushResult) error {
	h := sha256.Sum256(data)
	return put(ctx, dst, name, bytes.NewReader(data), int64(len(data)), hex.EncodeToString(h[:]), res)
}

// put uploads r (size bytes of SHA-256 sum, read again from its start) as
// name unless dst already holds that content.
func put(ctx context.Context, dst objstore.Store, name string, r io.ReadSeeker, size int64, sum string, res *PushResult) error {
	if ok, err := same(ctx, dst, name, size, sum); err != nil || ok {
		if ok {
			res.Skipped = append(res.Skipped, name)
		}
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := dst.Put(ctx, name, r, objstore.PutOptions{Size: size, SHA256: sum,
		ContentType: contentType(name), CacheControl: CacheControl(name)}); err != nil {
		return err
	}
	res.Uploaded = append(res.Uploaded, name)
	res.Bytes += size
	return nil
}
