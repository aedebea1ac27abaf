// Package objstore is the server's and the publisher's object storage: a
// small interface over named, immutable-once-written blobs (the image
// repository's public metadata and payloads) with two backends: a local
// directory ([Dir], the default) and an S3-compatible bucket (package
// internal/objstore/s3store).
//
// # Threat model
//
// The store holds only public, vendor-signed files that devices verify, so
// it is not trusted for their content; what this package guarantees is
// that the store holds what the caller put and nothing leaks out of it:
//
//   - Names are untrusted (they come from URLs and bucket listings) and are
//     checked by [CheckName]: relative, clean, no dot segments, no control
//     characters or backslashes, at most MaxNameLen bytes. A listing entry
//     with a bad name is an error, never a path to act on.
//   - [Store.Put] is atomic and verified: the object appears whole, with
//     exactly the declared size and SHA-256, or not at all. The backends
//     check the stream's size and digest before handing the last byte to
//     the backend, so a short, long or altered stream (or a cancelled
//     context) leaves nothing visible.
//   - Nothing is read into memory: [Store.Open] returns a seekable stream
//     (an S3 backend fetches each read position with an HTTP Range
//     request), and Put streams.
//   - Sizes reported by a backend are checked against MaxObjectSize.
//
// The backend's operator (who holds the bucket's credentials) can still
// delete or replace objects; devices then refuse what does not verify, and
// a missing object is an outage, not a compromise.
package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"time"
)

// Limits.
const (
	// MaxNameLen bounds an object name (the S3 limit is 1024 bytes of key,
	// prefix included).
	MaxNameLen = 1024
	// MaxObjectSize bounds an object: 5 GiB, the largest single S3 PUT (Put
	// never uses multipart uploads, so an object appears in one request).
	MaxObjectSize = 5 << 30
	// DefaultMaxList bounds List when the caller gives no limit.
	DefaultMaxList = 100_000
	// maxEmptyReads bounds reads returning neither data nor an error while
	// a Put looks for the end of its stream.
	maxEmptyReads = 100
)

// Errors callers branch on.
var (
	// ErrNotExist: no object has this name.
	ErrNotExist = errors.New("object does not exist")
	// ErrName: an object name failed CheckName.
	ErrName = errors.New("invalid object name")
	// ErrContent: what was put did not match the declared size or SHA-256.
	ErrContent = errors.New("object content does not match its declared size or sha256")
	// ErrTooMany: a listing has more entries than the caller's limit.
	ErrTooMany = errors.New("too many objects")
	// ErrTooLarge: a backend reported an object larger than MaxObjectSize.
	ErrTooLarge = errors.New("object too large")
	// ErrUnavailable: the backend could not be reached or failed (network,
	// a server error, credentials refused); the object may exist.
	ErrUnavailable = errors.New("object store unavailable")
)

// Info describes a stored object.
type Info struct {
	// Name is the object's name in the store (no backend prefix).
	Name string
	// Size in bytes, 0..MaxObjectSize.
	Size int64
	// ModTime is when the object was last written.
	ModTime time.Time
	// ETag identifies this version of the object for HTTP caches: quoted,
	// changes whenever the content may have changed.
	ETag string
	// SHA256 is the lowercase hex SHA-256 of the content when the backend
	// knows it without reading the object (S3: recorded at Put), else "".
	SHA256 string
	// ContentType and CacheControl as stored (S3), else "".
	ContentType, CacheControl string
}

// Object is an open object: a seekable stream of its content.
type Object interface {
	io.ReadSeekCloser
	// Info describes the object that is being read.
	Info() Info
}

// PutOptions declare what is put.
type PutOptions struct {
	// Size is the exact content length: 0..MaxObjectSize. Required.
	Size int64
	// SHA256 is the lowercase hex SHA-256 of the content. Required: Put
	// fails with ErrContent, leaving nothing, if the stream differs.
	SHA256 string
	// ContentType and CacheControl are stored with the object when the
	// backend keeps them (S3, for a CDN or a browser); "" means none.
	ContentType, CacheControl string
}

// Store is a flat namespace of objects with slash-separated names.
// Every method checks names with CheckName. Implementations are safe for
// concurrent use.
type Store interface {
	// Open opens an object for reading; ErrNotExist if there is none.
	Open(ctx context.Context, name string) (Object, error)
	// Stat describes an object; ErrNotExist if there is none.
	Stat(ctx context.Context, name string) (Info, error)
	// Put stores r's content under name, replacing any object, atomically:
	// readers see the old object or the whole new one, never a part. The
	// content must match o.Size and o.SHA256.
	Put(ctx context.Context, name string, r io.Reader, o PutOptions) (Info, error)
	// List returns the objects whose names start with prefix, in name
	// order; more than max (0: DefaultMaxList) entries is ErrTooMany.
	List(ctx context.Context, prefix string, max int) ([]Info, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// String names the store for messages (no credentials).
	String() string
}

// CheckName checks an object name: 1..MaxNameLen bytes, relative, equal to
// its path.Clean form, no empty segment or segment starting with ".", no
// backslash or control character. It wraps ErrName.
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: length %d outside 1..%d", ErrName, len(name), MaxNameLen)
	}
	if path.Clean("/"+name) != "/"+name {
		return fmt.Errorf("%w: %q is not clean", ErrName, truncate(name))
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg[0] == '.' {
			return fmt.Errorf("%w: %q has an empty or dot segment", ErrName, truncate(name))
		}
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("%w: %q has a forbidden character", ErrName, truncate(name))
		}
	}
	return nil
}

// CheckPrefix checks a List prefix: "" or a valid name, optionally with a
// trailing "/".
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return CheckName(strings.TrimSuffix(prefix, "/"))
}

// CheckPutOptions checks o: size within 0..MaxObjectSize and a 64-digit
// lowercase hex SHA-256.
func CheckPutOptions(o PutOptions) error {
	if o.Size < 0 || o.Size > MaxObjectSize {
		return fmt.Errorf("%w: size %d outside 0..%d", ErrContent, o.Size, int64(MaxObjectSize))
	}
	if !IsSHA256Hex(o.SHA256) {
		return fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrContent, truncate(o.SHA256))
	}
	return nil
}

// IsSHA256Hex reports whether s is 64 lowercase hex digits.
func IsSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	const n = 80
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// VerifyingReader returns a reader of r that yields exactly o.Size bytes
// and withholds the last of them (returning an error wrapping ErrContent
// instead) unless the whole stream has that size and SHA-256: a backend
// that stops reading at the declared length still never receives a
// complete wrong object. o must have passed CheckPutOptions.
func VerifyingReader(r io.Reader, o PutOptions) io.Reader {
	return &verifying{r: r, want: o.SHA256, left: o.Size, h: sha256.New()}
}

type verifying struct {
	r    io.Reader
	want string
	left int64
	h    hash.Hash
	err  error
}

func (v *verifying) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.left == 0 {
		v.err = v.finish()
		if v.err == nil {
			v.err = io.EOF
		}
		return 0, v.err
	}
	if int64(len(p)) > v.left {
		p = p[:v.left]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if v.left == 0 {
		// The last bytes: hand them over only if the stream ends here and
		// its digest matches.
		if v.err = v.finish(); v.err != nil {
			return 0, v.err
		}
		return n, nil
	}
	if err == io.EOF {
		v.err = fmt.Errorf("%w: stream ended %d bytes short", ErrContent, v.left)
		return n, v.err
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// finish checks that r has no more bytes and that the digest matches.
func (v *verifying) finish() error {
	var one [1]byte
	for i := 0; ; i++ {
		if i == maxEmptyReads {
			return fmt.Errorf("%w: stream returned no data and no end %d times", ErrContent, maxEmptyReads)
		}
		n, err := v.r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("%w: stream is longer than declared", ErrContent)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
		return fmt.Errorf("%w: sha256 %s, declared %s", ErrContent, got, v.want)
	}
	return nil
}

// HashReader returns the size and lowercase hex SHA-256 of r's content,
// reading at most max bytes (more is an error wrapping ErrTooLarge).
func HashReader(r io.Reader, max int64) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, max+1))
	if err != nil {
		return n, "", err
	}
	if n > max {
		return n, "", fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
