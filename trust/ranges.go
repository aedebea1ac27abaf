package trust

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// RangeSource is a Source that can serve byte ranges of a target file
// (online delta updates: the device fetches only the blocks it lacks).
//
// A ranged read guarantees position and length, not content: the bytes
// come from where the server says they come from, and there are exactly n
// of them, but whether they are the signed file's bytes is for the caller
// to check (against the release's signed hash tree) before acting on them.
type RangeSource interface {
	Source
	// OpenTargetRange returns a reader of exactly n bytes (n >= 1) of the
	// target file at targetPath (its consistent-snapshot name when
	// hashPrefix is not empty) starting at off. length is the signed
	// length of the whole file: a range outside it is refused before any
	// request, and a server that reports another total is refused. The
	// reader returns io.EOF after exactly n bytes and never before: a body
	// that ends early is an error wrapping io.ErrUnexpectedEOF. It never
	// returns more than n bytes. Every refusal of the range itself wraps
	// ErrRange; a caller may then fall back to OpenTarget.
	OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error)
}

// ErrRange is wrapped by every refusal of a ranged read (RangeSource): a
// range outside the signed length, an answer other than 206 Partial
// Content (a server that ignores Range answers 200 with the whole file), a
// missing, malformed or different Content-Range, another total length, a
// Content-Length other than the range's, a multipart or encoded answer.
// The caller can still download the whole file.
var ErrRange = errors.New("the server does not serve the requested byte range")

// MaxContentRangeLength bounds the Content-Range header we parse.
const MaxContentRangeLength = 128

// ErrContentRange is wrapped by ParseContentRange errors.
var ErrContentRange = errors.New("invalid Content-Range")

// ValidRange refuses, with an error wrapping ErrRange, a range of n bytes
// from off that is empty or not inside a file of length bytes.
func ValidRange(length, off, n int64) error {
	if off < 0 || n < 1 || length < 0 || off > length || n > length-off {
		return fmt.Errorf("%w: %d bytes from byte %d are not inside a %d-byte file", ErrRange, n, off, length)
	}
	return nil
}

// RangeHeader returns the Range request header for n bytes from off.
func RangeHeader(off, n int64) string {
	return "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10)
}

// CheckRangeResponse checks that resp answers a request for exactly the n
// bytes from off of a length-byte file (ValidRange): HTTP 206 with one
// Content-Range "bytes off-(off+n-1)/length", a Content-Length of n, and
// neither a multipart body nor a Content-Encoding. HTTP 404 is ErrNotFound;
// every other refusal wraps ErrRange. It does not close the body.
func CheckRangeResponse(resp *http.Response, off, n, length int64) error {
	got := ""
	crs := resp.Header.Values("Content-Range")
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w (HTTP 404)", ErrNotFound)
	case resp.StatusCode == http.StatusOK:
		got = "HTTP 200 (the whole file: the server ignores Range)"
	case resp.StatusCode != http.StatusPartialContent:
		got = "HTTP status " + strconv.Itoa(resp.StatusCode)
	case strings.HasPrefix(strings.ToLower(resp.Header.Get("Content-Type")), "multipart/"):
		got = "a multipart answer"
	case resp.Header.Get("Content-Encoding") != "" && resp.Header.Get("Content-Encoding") != "identity":
		got = "a Content-Encoding"
	case len(crs) != 1:
		got = strconv.Itoa(len(crs)) + " Content-Range headers"
	default:
		first, last, total, err := ParseContentRange(crs[0])
		switch {
		case err != nil:
			return fmt.Errorf("%w: %w", ErrRange, err)
		case first != off || last != off+n-1 || total != length:
			got = "Content-Range " + strconv.Quote(crs[0])
		case resp.ContentLength != n:
			got = "Content-Length " + strconv.FormatInt(resp.ContentLength, 10)
		default:
			return nil
		}
	}
	return fmt.Errorf("%w: asked for bytes %d-%d/%d, got %s", ErrRange, off, off+n-1, length, got)
}

// ParseContentRange parses "bytes FIRST-LAST/TOTAL" (RFC 9110 14.4) of a
// 206 response; TOTAL must be known ("*" is refused), FIRST <= LAST < TOTAL.
// Only the canonical form is accepted (no spaces, signs or leading zeros).
func ParseContentRange(s string) (first, last, total int64, err error) {
	bad := func(why string) (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("%w %q: %s", ErrContentRange, clip(s, MaxContentRangeLength), why)
	}
	if len(s) > MaxContentRangeLength {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return bad("unit is not bytes")
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no total")
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("no range")
	}
	num := func(v string) (int64, bool) {
		if v == "" || len(v) > 19 || strings.TrimLeft(v, "0123456789") != "" || (len(v) > 1 && v[0] == '0') {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	if first, ok = num(a); !ok {
		return bad("bad first byte position")
	}
	if last, ok = num(b); !ok {
		return bad("bad last byte position")
	}
	if total, ok = num(tot); !ok {
		return bad("bad or unknown total length")
	}
	if first > last || last >= total {
		return bad("range outside the total length")
	}
	return first, last, total, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// rangeBody reads exactly left bytes of its ReadCloser: never more, and
// io.ErrUnexpectedEOF if it ends sooner.
type rangeBody struct {
	io.ReadCloser
	left int64
}

func (b *rangeBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	switch {
	case b.left == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, fmt.Errorf("range ended %d bytes early: %w", b.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

// seekRange returns n bytes from off of rc, which must be an io.Seeker
// whose size is length (a local file, an in-memory target), or closes rc
// and refuses with ErrRange.
func seekRange(rc io.ReadCloser, name string, length, off, n int64) (io.ReadCloser, error) {
	s, ok := rc.(io.Seeker)
	if !ok {
		rc.Close()
		return nil, fmt.Errorf("%w: target %q cannot be read at an offset", ErrRange, name)
	}
	size, err := s.Seek(0, io.SeekEnd)
	if err == nil && size != length {
		err = fmt.Errorf("%w: target %q is %d bytes, its signed length is %d", ErrRange, name, size, length)
	}
	if err == nil {
		_, err = s.Seek(off, io.SeekStart)
	}
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &rangeBody{ReadCloser: rc, left: n}, nil
}
