package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// repoEnv is a vendor repository with releases 1.0.0 and 1.1.0 served over
// TLS by a fault-injecting handler, in repository-only mode.
type repoEnv struct {
	v       *vendor
	pki     *pki
	h       *repoHandler
	srv     *httptest.Server
	caPath  string
	initial []byte // bundle of 1.0.0
	size    int    // payload size of 1.1.0
}

func newRepoEnv(t *testing.T) *repoEnv {
	t.Helper()
	e := &repoEnv{v: newVendor(t), pki: newPKI(t, "repo")}
	e.v.release("1.0.0", 1)
	e.initial = e.v.bundle("1.0.0")
	e.size = len(e.v.release("1.1.0", 1))
	e.h = newRepoHandler(e.v.r.PublicDir())
	e.srv = startTLS(t, "127.0.0.1:0", e.h, e.pki.server, nil)
	e.caPath = e.pki.writeCA(t, t.TempDir())
	return e
}

// device provisions a new device at 1.0.0 and returns its device config and
// an agent for it.
func (e *repoEnv) device(t *testing.T, stall string) (string, *Agent) {
	t.Helper()
	devCfg := newDevice(t, e.v, e.initial)
	return devCfg, newTestAgent(t, repoConfig(t, devCfg, e.srv.URL, e.caPath, stall))
}

func TestUpdateFromRepositoryOnly(t *testing.T) {
	e := newRepoEnv(t)
	devCfg, a := e.device(t, "2s")
	res, err := a.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("result = %+v, want committed 1.1.0", res)
	}
	if v, st := deviceVersion(t, devCfg); v != "1.1.0" || st.Trial != "" {
		t.Fatalf("device runs %q (boot %+v), want committed 1.1.0", v, st)
	}
	if got := e.h.targetRanges(); len(got) != 1 || got[0] != "" {
		t.Errorf("target requests = %q, want one full GET", got)
	}
	// Nothing newer: the next poll does nothing and downloads nothing.
	res, err = a.RunOnce(context.Background())
	if err != nil || res.Action != ActionNone {
		t.Fatalf("second poll = %+v, %v; want none", res, err)
	}
	if n := len(e.h.targetRanges()); n != 1 {
		t.Errorf("second poll downloaded a target (%d requests)", n)
	}
}

func TestResumeAfterConnectionCutAtRandomOffsets(t *testing.T) {
	e := newRepoEnv(t)
	rng := rand.New(rand.NewPCG(2024, 11))
	for i := range 10 {
		k := 1 + rng.IntN(e.size-1)
		t.Run(fmt.Sprintf("cut%d_at_%d", i, k), func(t *testing.T) {
			e.h.mu.Lock()
			e.h.ranges = nil
			e.h.mu.Unlock()
			e.h.setFault(firstRequestOnly(cutAfter(k)))
			devCfg, a := e.device(t, "2s")
			res, err := a.RunOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != ActionCommitted {
				t.Fatalf("result = %+v, want committed", res)
			}
			if v, _ := deviceVersion(t, devCfg); v != "1.1.0" {
				t.Fatalf("device runs %q", v)
			}
			rs := e.h.targetRanges()
			if len(rs) != 2 || rs[0] != "" || !strings.HasPrefix(rs[1], "bytes=") {
				t.Fatalf("target requests = %q, want a full GET then one Range GET", rs)
			}
			var n int
			if _, err := fmt.Sscanf(rs[1], "bytes=%d-", &n); err != nil || n > k || n <= 0 {
				t.Fatalf("resumed at %q after a cut at %d: want 0 < N <= %d", rs[1], k, k)
			}
		})
	}
}

func TestResumeAfterServerKilledAndRestarted(t *testing.T) {
	e := newRepoEnv(t)
	killed := make(chan struct{})
	var once bool
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		if once {
			return false
		}
		once = true
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:200<<10])
		w.(http.Flusher).Flush()
		close(killed)
		<-r.Context().Done()
		return true
	})
	devCfg, a := e.device(t, "2s")
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		<-killed
		addr := e.srv.Listener.Addr().String()
		e.srv.CloseClientConnections()
		e.srv.Close()
		time.Sleep(200 * time.Millisecond) // the agent's first resumes hit a closed port
		e.h.setFault(nil)
		e.srv = startTLS(t, addr, e.h, e.pki.server, nil)
	}()
	res, err := a.RunOnce(context.Background())
	<-restarted
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionCommitted {
		t.Fatalf("result = %+v, want committed", res)
	}
	if v, _ := deviceVersion(t, devCfg); v != "1.1.0" {
		t.Fatalf("device runs %q", v)
	}
	rs := e.h.targetRanges()
	if len(rs) != 2 || rs[1] != fmt.Sprintf("bytes=%d-", 200<<10) {
		t.Fatalf("target requests = %q, want a full GET then bytes=%d-", rs, 200<<10)
	}
}

// TestRefusedDownloadsInstallNothing covers the faults after which the
// device must keep running what it ran: a stalled server, bytes flipped in
// transit, an endless or over-long body, and a server that cannot resume.
func TestRefusedDownloadsInstallNothing(t *testing.T) {
	e := newRepoEnv(t)
	tests := []struct {
		name  string
		stall string
		fault fault
		want  []error
	}{
		{
			name: "stalled server", stall: "600ms",
			fault: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				if r.Header.Get("Range") == "" {
					w.Header().Set("Content-Length", fmt.Sprint(len(data)))
					w.Write(data[:100<<10])
					w.(http.Flusher).Flush()
				}
				select { // never another byte
				case <-r.Context().Done():
				case <-time.After(20 * time.Second):
				}
				return true
			},
			want: []error{ErrStalled, ErrResume},
		},
		{
			name: "flipped byte", stall: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				bad := append([]byte(nil), data...)
				bad[12345] ^= 0x01
				w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
				w.Write(bad)
				return true
			},
			want: []error{payload.ErrHash},
		},
		{
			name: "endless body", stall: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				// No Content-Length: the body never ends.
				w.WriteHeader(http.StatusOK)
				if _, err := w.Write(data); err != nil {
					return true
				}
				junk := make([]byte, 32<<10)
				for i := 0; i < 4096; i++ { // at most 128 MiB
					if _, err := w.Write(junk); err != nil {
						return true
					}
				}
				return true
			},
			want: []error{payload.ErrLength},
		},
		{
			name: "over-long body", stall: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				w.Header().Set("Content-Length", fmt.Sprint(len(data)+1000))
				w.Write(data)
				w.Write(make([]byte, 1000))
				return true
			},
			want: []error{payload.ErrLength},
		},
		{
			name: "truncated body, server ignores Range", stall: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				if r.Header.Get("Range") != "" {
					w.Header().Set("Content-Length", fmt.Sprint(len(data)))
					w.Write(data) // 200 with the whole file: cannot continue
					return true
				}
				return cutAfter(300<<10)(w, r, data)
			},
			want: []error{ErrResume},
		},
		{
			name: "resume at the wrong offset", stall: "2s",
			fault: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				if r.Header.Get("Range") != "" {
					w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
					w.Header().Set("Content-Length", fmt.Sprint(len(data)))
					w.WriteHeader(http.StatusPartialContent)
					w.Write(data)
					return true
				}
				return cutAfter(300<<10)(w, r, data)
			},
			want: []error{ErrResume},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.h.setFault(tt.fault)
			e.h.sent.Store(0)
			devCfg, a := e.device(t, tt.stall)
			before := fingerprint(t, devCfg)
			res, err := a.RunOnce(context.Background())
			var ie *device.InstallError
			if !errors.As(err, &ie) || ie.Check != device.CheckPayload {
				t.Fatalf("RunOnce error = %v, want an install error of the payload check", err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v does not wrap %v", err, w)
				}
			}
			if res == nil || res.Action != ActionFailed {
				t.Errorf("result = %+v, want failed", res)
			}
			if after := fingerprint(t, devCfg); after != before {
				t.Fatal("a refused download changed the active slot, boot control, counter or trusted metadata")
			}
			if sent := e.h.sent.Load(); sent > int64(e.size)+32<<20 {
				t.Errorf("the server got to send %d bytes for a %d-byte target", sent, e.size)
			}
			// The next poll against a good server installs the release.
			e.h.setFault(nil)
			res, err = a.RunOnce(context.Background())
			if err != nil || res.Action != ActionCommitted {
				t.Fatalf("retry with a good server = %+v, %v; want committed", res, err)
			}
		})
	}
}

// TestStreamIsHandedOverOnce reads a download through cuts with a tiny
// buffer and checks the bytes are exactly the file: no byte is repeated or
// skipped across resumes.
func TestStreamIsHandedOverOnce(t *testing.T) {
	e := newRepoEnv(t)
	cuts := 0
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		cuts++
		if cuts > 4 {
			return false
		}
		start := 0
		if rg := r.Header.Get("Range"); rg != "" {
			fmt.Sscanf(rg, "bytes=%d-", &start)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(len(data)-start))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		}
		w.Write(data[start : start+50_000+cuts*777])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	pool, err := loadCAPool(durable.OS, e.caPath, "")
	if err != nil {
		t.Fatal(err)
	}
	src := NewHTTPSource(e.srv.URL+"/metadata", e.srv.URL+"/targets", newHTTPClient(pool, "", nil, nil),
		DownloadOptions{ResumeBackoff: 10 * time.Millisecond})
	infos, err := e.v.r.Releases(testProduct)
	if err != nil {
		t.Fatal(err)
	}
	var path, prefix string
	var length int64
	for _, in := range infos {
		if in.Version == "1.1.0" {
			path, prefix, length = in.TargetPath, in.SHA256, in.Length
		}
	}
	rc, err := src.OpenTarget(context.Background(), path, prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []byte
	buf := make([]byte, 1000)
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := testImage(uint64(len("1.1.0"))*1000+uint64('0'), testImageSize)
	// The payload is the image's hash tree, then the image (schema 2).
	if int64(len(got)) != length || !strings.HasSuffix(string(got), string(want)) {
		t.Fatalf("resumed stream differs from the file (%d bytes, the file is %d and ends in the %d-byte image)", len(got), length, len(want))
	}
	if cuts != 5 {
		t.Errorf("server saw %d requests, want 5 (4 cut + 1 good)", cuts)
	}
}
