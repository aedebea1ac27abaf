package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/trust/trusttest"
)

const (
	rangeTarget = "a/fw.img"
	rangePrefix = "ab12"
	// rangeFileSize spans many TLS records and read buffers.
	rangeFileSize = 100_003
)

// rangeEnv is a served directory with one target file (rangeTarget under
// its consistent-snapshot name) behind a fault-injecting TLS server.
type rangeEnv struct {
	dir    string
	data   []byte
	pki    *pki
	h      *repoHandler
	srv    *httptest.Server
	client *http.Client
}

func newRangeEnv(t *testing.T) *rangeEnv {
	t.Helper()
	e := &rangeEnv{dir: t.TempDir(), data: make([]byte, rangeFileSize), pki: newPKI(t, "ranges")}
	rng := rand.New(rand.NewPCG(13, 31))
	for i := range e.data {
		e.data[i] = byte(rng.Uint32())
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "targets", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "targets", "a", rangePrefix+".fw.img"), e.data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.h = newRepoHandler(e.dir)
	e.srv = startTLS(t, "127.0.0.1:0", e.h, e.pki.server, nil)
	pool := x509.NewCertPool()
	pool.AddCert(e.pki.caCert)
	e.client = newHTTPClient(pool, "", nil, nil)
	return e
}

func (e *rangeEnv) source(base string, opts DownloadOptions) *HTTPSource {
	if opts.ResumeBackoff == 0 {
		opts.ResumeBackoff = 10 * time.Millisecond
	}
	return NewHTTPSource(base+"/metadata", base+"/targets", e.client, opts)
}

func (e *rangeEnv) length() int64 { return int64(len(e.data)) }

// readRange reads a range through a 1000-byte buffer (trusttest.ReadRange).
func readRange(t *testing.T, rs trust.RangeSource, length, off, n int64) ([]byte, error) {
	t.Helper()
	return trusttest.ReadRange(t, rs, rangeTarget, rangePrefix, length, off, n, 1000)
}

// countProgress counts the calls of a Progress.
type countProgress struct{ calls atomic.Int64 }

func (p *countProgress) Start(string, int64) { p.calls.Add(1) }
func (p *countProgress) Update(int64)        { p.calls.Add(1) }
func (p *countProgress) Done()               { p.calls.Add(1) }

// checkRanges reads ranges of e's file from rs and compares the bytes.
func checkRanges(t *testing.T, e *rangeEnv, rs trust.RangeSource) {
	t.Helper()
	L := e.length()
	for _, r := range [][2]int64{{0, 1}, {L - 1, 1}, {0, L}, {4096, 4096}, {12345, 54321}, {L - 4096, 4096}, {1, L - 2}} {
		got, err := readRange(t, rs, L, r[0], r[1])
		if err != nil {
			t.Fatalf("%d bytes from %d: %v", r[1], r[0], err)
		}
		if !bytes.Equal(got, e.data[r[0]:r[0]+r[1]]) {
			t.Fatalf("%d bytes from %d: got %d bytes that are not the file's", r[1], r[0], len(got))
		}
	}
}

func TestRangeReadsFromFileServer(t *testing.T) {
	e := newRangeEnv(t)
	var p countProgress
	checkRanges(t, e, e.source(e.srv.URL, DownloadOptions{Progress: &p}))
	want := []string{"bytes=0-0", fmt.Sprintf("bytes=%d-%d", e.length()-1, e.length()-1)}
	if got := e.h.targetRanges(); len(got) != 7 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Range headers = %q, want 7 starting with %q", got, want)
	}
	if n := p.calls.Load(); n != 0 {
		t.Errorf("ranged reads reported progress %d times; the caller does", n)
	}
}

// TestRangeReadsFromNginx reads ranges from a plain static server, with
// the agent's resumable source and with trust's, and resumes a range cut
// by the network.
func TestRangeReadsFromNginx(t *testing.T) {
	e := newRangeEnv(t)
	base := startNginx(t, e.dir, e.pki)
	t.Run("agent", func(t *testing.T) { checkRanges(t, e, e.source(base, DownloadOptions{})) })
	t.Run("trust", func(t *testing.T) {
		src, err := trust.NewHTTPSourceWithOptions(base+"/metadata", base+"/targets", trust.HTTPOptions{Client: e.client})
		if err != nil {
			t.Fatal(err)
		}
		checkRanges(t, e, src.(trust.RangeSource))
	})
	t.Run("resume after a cut", func(t *testing.T) {
		var logs atomic.Int64
		proxy := cuttingProxy(t, base[len("https://"):], 50<<10)
		src := e.source("https://"+proxy, DownloadOptions{Logf: func(string, ...any) { logs.Add(1) }})
		got, err := readRange(t, src, e.length(), 7, e.length()-8)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, e.data[7:e.length()-1]) {
			t.Fatal("the resumed range is not the file's bytes")
		}
		if logs.Load() == 0 {
			t.Error("the cut range was not resumed")
		}
	})
}

// TestRangeLyingServerAgent: every lie of trusttest.RangeLies, on the
// first response and on every resume, is refused with trust.ErrRange
// before a byte is returned; a body that keeps ending early exhausts the
// resumes; the reader never returns more than the range.
func TestRangeLyingServerAgent(t *testing.T) {
	e := newRangeEnv(t)
	const off, n, attempts = 1000, 5000, 2
	src := e.source(e.srv.URL, DownloadOptions{MaxResumeAttempts: attempts})
	for _, lie := range trusttest.RangeLies() {
		t.Run(lie.Name, func(t *testing.T) {
			var reqs atomic.Int64
			e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				reqs.Add(1)
				a, b, ok := trusttest.ParseRange(r.Header.Get("Range"))
				if !ok || b != off+n-1 {
					t.Errorf("Range header %q, want bytes=N-%d", r.Header.Get("Range"), off+n-1)
				}
				lie.Serve(w, data, a, b)
				return true
			})
			got, err := readRange(t, src, e.length(), off, n)
			switch {
			case lie.Content:
				if err != nil || len(got) != n || bytes.Equal(got, e.data[off:off+n]) {
					t.Fatalf("got %d bytes, %v; want %d other bytes and no error", len(got), err, n)
				}
			case lie.Short:
				if !errors.Is(err, ErrResume) || !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != n-1 {
					t.Fatalf("got %d bytes, %v; want %d and ErrResume, io.ErrUnexpectedEOF", len(got), err, n-1)
				}
				if r := reqs.Load(); r != 1+attempts {
					t.Errorf("%d requests, want %d (the first and %d resumes)", r, 1+attempts, attempts)
				}
			default:
				if !errors.Is(err, trust.ErrRange) || len(got) != 0 {
					t.Fatalf("got %d bytes, %v; want none and trust.ErrRange", len(got), err)
				}
				if r := reqs.Load(); r != 1 {
					t.Errorf("%d requests for a refused range, want 1", r)
				}
			}
		})
	}
	// The same lies on a resume: refused with ErrResume and trust.ErrRange
	// after the bytes of the first response.
	for _, lie := range trusttest.RangeLies() {
		if lie.Short || lie.Content {
			continue
		}
		t.Run("resume/"+lie.Name, func(t *testing.T) {
			const k = 3000
			e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				a, b, _ := trusttest.ParseRange(r.Header.Get("Range"))
				if a == off {
					cutRange(k)(w, r, data)
				}
				lie.Serve(w, data, a, b)
				return true
			})
			got, err := readRange(t, src, e.length(), off, n)
			if !errors.Is(err, ErrResume) || !errors.Is(err, trust.ErrRange) || len(got) != k {
				t.Fatalf("got %d bytes, %v; want %d and ErrResume, trust.ErrRange", len(got), err, k)
			}
			if !bytes.Equal(got, e.data[off:off+k]) {
				t.Fatal("the bytes before the cut are not the file's")
			}
		})
	}
}

// cutRange answers a range request correctly, sends k bytes of the body
// and drops the connection.
func cutRange(k int64) fault {
	return func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		a, b, _ := trusttest.ParseRange(r.Header.Get("Range"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(b-a+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[a : a+k])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

// TestRangeResumedAfterCut: a range cut after k bytes is resumed from
// where it stopped to the end of the range, and the bytes are the file's,
// each handed over once.
func TestRangeResumedAfterCut(t *testing.T) {
	e := newRangeEnv(t)
	src := e.source(e.srv.URL, DownloadOptions{})
	const off, n = 20_000, 60_000
	for _, k := range []int64{0, 1, 12345, n - 1} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			e.h.mu.Lock()
			e.h.ranges = nil
			e.h.mu.Unlock()
			var first atomic.Bool
			first.Store(true)
			e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				if !first.Swap(false) {
					return false // the file server answers the resume
				}
				return cutRange(k)(w, r, data)
			})
			got, err := readRange(t, src, e.length(), off, n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, e.data[off:off+n]) {
				t.Fatalf("resumed range differs from the file (%d bytes)", len(got))
			}
			rs := e.h.targetRanges()
			if len(rs) != 2 || rs[0] != fmt.Sprintf("bytes=%d-%d", off, off+n-1) {
				t.Fatalf("Range headers = %q, want the range then one resume", rs)
			}
			a, b, ok := trusttest.ParseRange(rs[1])
			if !ok || a < off || a > off+k || b != off+n-1 {
				t.Fatalf("resumed with %q after a cut at %d: want bytes=N-%d, %d <= N <= %d", rs[1], k, off+n-1, off, off+k)
			}
		})
	}
}

// TestRangeResumeGivesUp: a server that cuts the range and then answers
// every resume with headers and no byte makes the read fail with ErrResume
// after MaxResumeAttempts resumes.
func TestRangeResumeGivesUp(t *testing.T) {
	e := newRangeEnv(t)
	const attempts = 3
	src := e.source(e.srv.URL, DownloadOptions{MaxResumeAttempts: attempts})
	var reqs atomic.Int64
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		if reqs.Add(1) == 1 {
			return cutRange(777)(w, r, data)
		}
		return cutRange(0)(w, r, data)
	})
	got, err := readRange(t, src, e.length(), 100, 10_000)
	if !errors.Is(err, ErrResume) || len(got) != 777 {
		t.Fatalf("got %d bytes, %v; want 777 and ErrResume", len(got), err)
	}
	if n := reqs.Load(); n != 1+attempts {
		t.Errorf("%d requests, want %d (the first and %d resumes)", n, 1+attempts, attempts)
	}
}

// TestRangeStallResumed: a range that stalls is cut by the throughput
// rule and resumed.
func TestRangeStallResumed(t *testing.T) {
	e := newRangeEnv(t)
	src := e.source(e.srv.URL, DownloadOptions{StallTimeout: 300 * time.Millisecond, MinThroughput: -1})
	var first atomic.Bool
	first.Store(true)
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		if !first.Swap(false) {
			return false
		}
		a, b, _ := trusttest.ParseRange(r.Header.Get("Range"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(b-a+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[a : a+100])
		w.(http.Flusher).Flush()
		select { // never another byte
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		return true
	})
	start := time.Now()
	got, err := readRange(t, src, e.length(), 50, 20_000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, e.data[50:20_050]) {
		t.Fatal("the resumed range is not the file's bytes")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stalled range took %v", d)
	}
	if rs := e.h.targetRanges(); len(rs) != 2 {
		t.Errorf("Range headers = %q, want the range then one resume", rs)
	}
}

// TestRangeRefusedUpFront: ranges outside the signed length cost no
// request.
func TestRangeRefusedUpFront(t *testing.T) {
	e := newRangeEnv(t)
	src := e.source(e.srv.URL, DownloadOptions{})
	L := e.length()
	for _, r := range [][2]int64{{-1, 1}, {0, 0}, {L, 1}, {L - 1, 2}, {1, L}} {
		if _, err := src.OpenTargetRange(context.Background(), rangeTarget, rangePrefix, L, r[0], r[1]); !errors.Is(err, trust.ErrRange) {
			t.Errorf("%d bytes from %d: %v, want trust.ErrRange", r[1], r[0], err)
		}
	}
	if rs := e.h.targetRanges(); len(rs) != 0 {
		t.Errorf("requests %q for ranges refused up front", rs)
	}
	// Another signed length: the server's total differs.
	if _, err := readRange(t, src, L+1, 0, 10); !errors.Is(err, trust.ErrRange) {
		t.Errorf("signed length %d, file %d: %v, want trust.ErrRange", L+1, L, err)
	}
}
