package trust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/trust/trusttest"
)

const (
	rangeTarget = "a/fw.img"
	rangePrefix = "ab12"
	// rangeFileSize spans several TLS records and read buffers.
	rangeFileSize = 100_003
)

// rangeRepo writes a served directory with one target, rangeTarget under
// its consistent-snapshot name, and returns the directory and the bytes.
func rangeRepo(t *testing.T) (string, []byte) {
	t.Helper()
	data := make([]byte, rangeFileSize)
	rng := rand.New(rand.NewPCG(13, 13))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "targets", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "targets", "a", rangePrefix+".fw.img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, data
}

// countingServer serves h over TLS on loopback and counts target requests.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func httpRangeSource(t *testing.T, srv *httptest.Server, opts HTTPOptions) RangeSource {
	t.Helper()
	opts.Client = srv.Client()
	src, err := NewHTTPSourceWithOptions(srv.URL+"/metadata", srv.URL+"/targets", opts)
	if err != nil {
		t.Fatal(err)
	}
	return src.(RangeSource)
}

// readRange reads a range through a 7-byte buffer (trusttest.ReadRange).
func readRange(t *testing.T, rs RangeSource, length, off, n int64) ([]byte, error) {
	t.Helper()
	return trusttest.ReadRange(t, rs, rangeTarget, rangePrefix, length, off, n, 7)
}

type seekTarget struct{ *bytes.Reader }

func (seekTarget) Close() error { return nil }

// rangeSources are every RangeSource of this package over the same file.
func rangeSources(t *testing.T) (map[string]RangeSource, []byte) {
	t.Helper()
	dir, data := rangeRepo(t)
	srv, _ := countingServer(t, http.FileServer(http.Dir(dir)))
	ms := &MapSource{Target: func(p string) (io.ReadCloser, error) {
		if p != rangeTarget {
			return nil, ErrNotFound
		}
		return seekTarget{bytes.NewReader(data)}, nil
	}}
	return map[string]RangeSource{
		"net/http file server": httpRangeSource(t, srv, HTTPOptions{}),
		"dir":                  NewDirSource(dir).(RangeSource),
		"map":                  ms,
		"trusted over dir":     TrustedSource(NewMemStore(), NewDirSource(dir)).(RangeSource),
	}, data
}

func TestRangeReads(t *testing.T) {
	srcs, data := rangeSources(t)
	L := int64(len(data))
	ranges := [][2]int64{{0, 1}, {L - 1, 1}, {0, L}, {4096, 4096}, {12345, 54321}, {L - 4096, 4096}, {1, L - 1}}
	for name, rs := range srcs {
		for _, r := range ranges {
			t.Run(fmt.Sprintf("%s/%d+%d", name, r[0], r[1]), func(t *testing.T) {
				got, err := readRange(t, rs, L, r[0], r[1])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
					t.Fatalf("got %d bytes that are not bytes %d-%d of the file", len(got), r[0], r[0]+r[1]-1)
				}
			})
		}
	}
}

// TestRangeOutsideFileRefusedBeforeIO: a range outside the signed length is
// refused with ErrRange without a request (HTTP) or an open (dir: the
// target does not even exist).
func TestRangeOutsideFileRefusedBeforeIO(t *testing.T) {
	dir, data := rangeRepo(t)
	srv, reqs := countingServer(t, http.FileServer(http.Dir(dir)))
	L := int64(len(data))
	srcs := map[string]RangeSource{
		"http": httpRangeSource(t, srv, HTTPOptions{}),
		"dir":  NewDirSource(t.TempDir()).(RangeSource),
		"map":  &MapSource{},
	}
	for _, r := range [][3]int64{
		{L, -1, 1}, {L, 0, 0}, {L, 0, -1}, {L, L, 1}, {L, L - 1, 2}, {L, 1, L},
		{L, math.MaxInt64, 1}, {L, 1, math.MaxInt64}, {L, math.MaxInt64, math.MaxInt64}, {-1, 0, 1}, {0, 0, 1},
	} {
		for name, rs := range srcs {
			_, err := rs.OpenTargetRange(context.Background(), rangeTarget, rangePrefix, r[0], r[1], r[2])
			if !errors.Is(err, ErrRange) {
				t.Errorf("%s: length %d, %d bytes from %d: %v, want ErrRange", name, r[0], r[2], r[1], err)
			}
		}
	}
	if n := reqs.Load(); n != 0 {
		t.Errorf("%d requests for ranges refused up front", n)
	}
}

// TestRangeOfAnotherLength: the file served is not as long as the signed
// length (another release, a truncated file): refused with ErrRange.
func TestRangeOfAnotherLength(t *testing.T) {
	srcs, data := rangeSources(t)
	for name, rs := range srcs {
		for _, length := range []int64{int64(len(data)) + 1, int64(len(data)) - 1} {
			if _, err := readRange(t, rs, length, 0, 10); !errors.Is(err, ErrRange) {
				t.Errorf("%s: signed length %d, file %d bytes: %v, want ErrRange", name, length, len(data), err)
			}
		}
	}
}

func TestRangeNotFound(t *testing.T) {
	srcs, _ := rangeSources(t)
	for name, rs := range srcs {
		if name == "map" {
			continue // Target decides
		}
		_, err := rs.OpenTargetRange(context.Background(), "a/other.img", "", 100, 0, 1)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
}

// TestRangeLyingServer: every wrong answer to a Range request is refused
// with ErrRange before a byte is returned, a dropped body ends in
// io.ErrUnexpectedEOF, and no answer makes the reader return more than the
// range. Different bytes in the right place are not seen here: the reader
// guarantees position and length; the caller checks content.
func TestRangeLyingServer(t *testing.T) {
	_, data := rangeRepo(t)
	const off, n = 1000, 5000
	for _, lie := range trusttest.RangeLies() {
		t.Run(lie.Name, func(t *testing.T) {
			srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				a, b, ok := trusttest.ParseRange(r.Header.Get("Range"))
				if !ok || a != off || b != off+n-1 {
					t.Errorf("Range header %q, want bytes=%d-%d", r.Header.Get("Range"), off, off+n-1)
					http.Error(w, "bad range", http.StatusBadRequest)
					return
				}
				lie.Serve(w, data, a, b)
			}))
			got, err := readRange(t, httpRangeSource(t, srv, HTTPOptions{}), int64(len(data)), off, n)
			switch {
			case lie.Content:
				if err != nil || len(got) != n || bytes.Equal(got, data[off:off+n]) {
					t.Fatalf("got %d bytes, %v; want %d other bytes and no error", len(got), err, n)
				}
			case lie.Short:
				if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= n {
					t.Fatalf("got %d bytes, %v; want fewer than %d and io.ErrUnexpectedEOF", len(got), err, n)
				}
			default:
				if !errors.Is(err, ErrRange) || len(got) != 0 {
					t.Fatalf("got %d bytes, %v; want none and ErrRange", len(got), err)
				}
			}
		})
	}
}

// TestRangeStall: a ranged read is under the minimum-throughput rule.
func TestRangeStall(t *testing.T) {
	_, data := rangeRepo(t)
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, b, _ := trusttest.ParseRange(r.Header.Get("Range"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(b-a+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[a : a+10])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(serverGiveUp):
		}
	}))
	start := time.Now()
	got, err := readRange(t, httpRangeSource(t, srv, testRule), int64(len(data)), 0, 5000)
	if !errors.Is(err, ErrSlowRetrieval) || len(got) > 10 {
		t.Fatalf("got %d bytes, %v; want at most 10 and ErrSlowRetrieval", len(got), err)
	}
	if d := time.Since(start); d > slowBound {
		t.Errorf("a stalled range took %v to cut (bound %v)", d, slowBound)
	}
}

type plainSource struct{ Source }

func TestTrustedSourceRanges(t *testing.T) {
	dir, _ := rangeRepo(t)
	if _, ok := TrustedSource(NewMemStore(), NewDirSource(dir)).(RangeSource); !ok {
		t.Error("TrustedSource over a RangeSource is not a RangeSource")
	}
	if _, ok := TrustedSource(NewMemStore(), plainSource{NewDirSource(dir)}).(RangeSource); ok {
		t.Error("TrustedSource over a plain Source claims to serve ranges")
	}
}

// TestMapSourceRangeNeedsSeeker: a target that is only a stream is refused
// with ErrRange (and closed), not read up to the range.
func TestMapSourceRangeNeedsSeeker(t *testing.T) {
	closed := false
	ms := &MapSource{Target: func(string) (io.ReadCloser, error) {
		return readCloser{bytes.NewReader([]byte("0123456789")), &closed}, nil
	}}
	_, err := ms.OpenTargetRange(context.Background(), rangeTarget, "", 10, 2, 3)
	if !errors.Is(err, ErrRange) || !closed {
		t.Fatalf("err = %v, closed = %v; want ErrRange and closed", err, closed)
	}
}

type readCloser struct {
	r      io.Reader
	closed *bool
}

func (r readCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r readCloser) Close() error               { *r.closed = true; return nil }

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in                 string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 100-599/600", 100, 599, 600, true},
		{"bytes 5-4/10", 0, 0, 0, false},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes 0-9/*", 0, 0, 0, false},
		{"bytes */10", 0, 0, 0, false},
		{"bytes 01-9/10", 0, 0, 0, false},
		{"bytes -1-9/10", 0, 0, 0, false},
		{"bytes +1-9/10", 0, 0, 0, false},
		{"items 0-9/10", 0, 0, 0, false},
		{"bytes 0-9/10 ", 0, 0, 0, false},
		{"bytes 0-99999999999999999999/10", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, l, n, err := ParseContentRange(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrContentRange) {
				t.Errorf("error %v does not wrap ErrContentRange", err)
			}
			if tt.ok && (f != tt.first || l != tt.last || n != tt.total) {
				t.Errorf("got %d-%d/%d", f, l, n)
			}
		})
	}
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-9/10")
	f.Add("bytes 100-599/600")
	f.Add("bytes */10")
	f.Fuzz(func(t *testing.T, s string) {
		first, last, total, err := ParseContentRange(s)
		if err != nil {
			return
		}
		if first < 0 || first > last || last >= total {
			t.Fatalf("accepted an impossible range %d-%d/%d", first, last, total)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", first, last, total); want != s {
			t.Fatalf("accepted %q, which is not the canonical %q", s, want)
		}
	})
}

// FuzzCheckRangeResponse: whatever the headers, an accepted answer is a
// 206 for exactly the range asked for, in the canonical form.
func FuzzCheckRangeResponse(f *testing.F) {
	f.Add(206, "bytes 10-19/100", int64(10), "", int64(10), int64(10), int64(100))
	f.Add(200, "", int64(100), "", int64(0), int64(100), int64(100))
	f.Add(206, "bytes 0-0/1", int64(1), "multipart/byteranges", int64(0), int64(1), int64(1))
	f.Fuzz(func(t *testing.T, status int, cr string, cl int64, ct string, off, n, length int64) {
		if ValidRange(length, off, n) != nil {
			return // refused before any request
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}, ContentLength: cl}
		if cr != "" {
			resp.Header.Set("Content-Range", cr)
		}
		if ct != "" {
			resp.Header.Set("Content-Type", ct)
		}
		err := CheckRangeResponse(resp, off, n, length)
		if err != nil {
			if status != http.StatusNotFound && !errors.Is(err, ErrRange) {
				t.Fatalf("refusal %v does not wrap ErrRange", err)
			}
			return
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, length); status != http.StatusPartialContent || cr != want || cl != n {
			t.Fatalf("accepted %d %q Content-Length %d for %q of %d bytes", status, cr, cl, want, n)
		}
	})
}
