package trusttest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RangeLie is one wrong answer to a single-range request "bytes=a-b" for a
// file whose bytes are data, for tests of ranged readers
// (trust.RangeSource). Serve writes the answer.
type RangeLie struct {
	Name  string
	Serve func(w http.ResponseWriter, data []byte, a, b int64)
	// Short: the headers are right but the body ends early (the connection
	// is dropped): the reader fails with io.ErrUnexpectedEOF. Content: the
	// headers and length are right but the bytes differ, which a ranged
	// reader cannot see (its caller checks content). Every other lie must
	// be refused with trust.ErrRange before any byte is returned.
	Short, Content bool
}

// RangeLies returns the lies; a request range must leave a byte before
// and after it (0 < a, b < len(data)-1) for the shifted ones.
func RangeLies() []RangeLie {
	partial := func(w http.ResponseWriter, cr string, cl int64) {
		if cr != "" {
			w.Header().Set("Content-Range", cr)
		}
		if cl >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(cl, 10))
		}
		w.WriteHeader(http.StatusPartialContent)
	}
	cr := func(a, b, total int64) string { return fmt.Sprintf("bytes %d-%d/%d", a, b, total) }
	return []RangeLie{
		{Name: "200 with the whole file", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			w.Header().Set("Content-Length", strconv.Itoa(len(d)))
			w.Write(d)
		}},
		{Name: "200 with the range", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			w.Header().Set("Content-Length", strconv.FormatInt(b-a+1, 10))
			w.Write(d[a : b+1])
		}},
		{Name: "416", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(d)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		}},
		{Name: "shifted start", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a-1, b-1, int64(len(d))), b-a+1)
			w.Write(d[a-1 : b])
		}},
		{Name: "other end", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a, b+1, int64(len(d))), b-a+2)
			w.Write(d[a : b+2])
		}},
		{Name: "other total", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a, b, int64(len(d))+1), b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "unknown total", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, fmt.Sprintf("bytes %d-%d/*", a, b), b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "garbled Content-Range", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, fmt.Sprintf("bytes %d-%d", a, b), b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "missing Content-Range", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, "", b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "two Content-Range headers", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			w.Header().Add("Content-Range", cr(a, b, int64(len(d))))
			w.Header().Add("Content-Range", cr(a-1, b-1, int64(len(d))))
			partial(w, "", b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "multipart/byteranges", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			body := fmt.Sprintf("--X\r\nContent-Type: application/octet-stream\r\nContent-Range: %s\r\n\r\n%s\r\n--X--\r\n", cr(a, b, int64(len(d))), d[a:b+1])
			w.Header().Set("Content-Type", "multipart/byteranges; boundary=X")
			partial(w, "", int64(len(body)))
			w.Write([]byte(body))
		}},
		{Name: "multipart/byteranges with a Content-Range", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			w.Header().Set("Content-Type", "Multipart/ByteRanges; boundary=X")
			partial(w, cr(a, b, int64(len(d))), b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "gzip encoded", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			w.Header().Set("Content-Encoding", "gzip")
			partial(w, cr(a, b, int64(len(d))), b-a+1)
			w.Write(d[a : b+1])
		}},
		{Name: "body one byte short, so says Content-Length", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a, b, int64(len(d))), b-a)
			w.Write(d[a:b])
		}},
		{Name: "body one byte long, so says Content-Length", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a, b, int64(len(d))), b-a+2)
			w.Write(d[a : b+2])
		}},
		{Name: "body one byte long, chunked", Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a, b, int64(len(d))), -1)
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write(d[a : b+2])
		}},
		{Name: "body one byte short, connection dropped", Short: true, Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			partial(w, cr(a, b, int64(len(d))), b-a+1)
			w.Write(d[a:b])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}},
		{Name: "different bytes", Content: true, Serve: func(w http.ResponseWriter, d []byte, a, b int64) {
			bad := append([]byte(nil), d[a:b+1]...)
			bad[len(bad)/2] ^= 1
			partial(w, cr(a, b, int64(len(d))), b-a+1)
			w.Write(bad)
		}},
	}
}

// ParseRange parses a request's single "bytes=a-b" Range header, for test
// handlers; ok is false for anything else.
func ParseRange(h string) (a, b int64, ok bool) {
	s, found := strings.CutPrefix(h, "bytes=")
	x, y, found2 := strings.Cut(s, "-")
	if !found || !found2 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseInt(x, 10, 64)
	b, err2 := strconv.ParseInt(y, 10, 64)
	return a, b, err1 == nil && err2 == nil && a <= b
}

// RangeOpener is trust.RangeSource's ranged read (named here: trust's own
// tests use this package, so it cannot import trust).
type RangeOpener interface {
	OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error)
}

// ReadRange reads a range through a buf-byte buffer, failing the test if
// the reader returns more than n bytes or a byte after io.EOF; err is nil
// after io.EOF. The read is bounded by a 30 s deadline.
func ReadRange(t testing.TB, rs RangeOpener, target, prefix string, length, off, n int64, buf int) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := rs.OpenTargetRange(ctx, target, prefix, length, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var got []byte
	b := make([]byte, buf)
	for {
		k, err := rc.Read(b)
		got = append(got, b[:k]...)
		if int64(len(got)) > n {
			t.Fatalf("the reader returned %d bytes of a %d-byte range", len(got), n)
		}
		if err == io.EOF {
			if k, err := rc.Read(b); k != 0 || err != io.EOF {
				t.Fatalf("read after io.EOF = %d, %v", k, err)
			}
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}
