package trust

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/trust/trusttest"
)

// Test rule: at least testMinRate bytes/s over testWindow (so 50 bytes per
// window; a 2 bytes/s trickle delivers one), after testGrace.
const (
	testMinRate = 100
	testWindow  = 500 * time.Millisecond
	testGrace   = 200 * time.Millisecond
	// trickleEvery is the pace of a 2 bytes/s trickle.
	trickleEvery = 500 * time.Millisecond
	// slowBound is how long a slow fetch may take under the test rule.
	slowBound = 5 * time.Second
	// serverGiveUp bounds every slow handler.
	serverGiveUp = 30 * time.Second
)

// slowMirror serves a signed repository over TLS on loopback; the file
// whose base name (version prefix removed) matches slow is served by mode.
type slowMirror struct {
	repo *trusttest.Repo
	slow atomic.Pointer[string]
	mode func(w http.ResponseWriter, r *http.Request, data []byte)
}

// serveName is the metadata or target file name without its version or
// hash prefix: "/metadata/3.snapshot.json" -> "snapshot.json".
func serveName(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if v, rest, ok := strings.Cut(base, "."); ok && strings.Contains(rest, ".") {
		if strings.TrimLeft(v, "0123456789abcdef") == "" {
			return rest
		}
	}
	return base
}

func (m *slowMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := m.slow.Load()
	if p == nil || serveName(r.URL.Path) != *p {
		m.repo.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	m.repo.ServeHTTP(rec, r)
	m.mode(w, r, rec.Body.Bytes())
}

// trickle sends data at 2 bytes/s (one byte per trickleEvery).
func trickle(w http.ResponseWriter, r *http.Request, data []byte) {
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(trickleEvery)
	defer t.Stop()
	give := time.After(serverGiveUp)
	for _, b := range data {
		if _, err := w.Write([]byte{b}); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-give:
			return
		case <-t.C:
		}
	}
}

// headersThenNothing sends the response headers, then no byte.
func headersThenNothing(w http.ResponseWriter, r *http.Request, data []byte) {
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(serverGiveUp):
	}
}

func newSlowMirror(t *testing.T, opts HTTPOptions) (*trusttest.Repo, *slowMirror, Source) {
	t.Helper()
	r := trusttest.New(farFuture)
	m := &slowMirror{repo: r}
	srv := httptest.NewTLSServer(m)
	t.Cleanup(srv.Close)
	opts.Client = srv.Client()
	src, err := NewHTTPSourceWithOptions(srv.URL+"/metadata/", srv.URL+"/targets/", opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, m, src
}

var testRule = HTTPOptions{
	MetadataTimeout: time.Minute,
	Throughput:      Throughput{MinRate: testMinRate, Window: testWindow, Grace: testGrace},
}

// TestSlowRetrievalTrickle: a mirror trickles one file at 2 bytes/s. Every
// metadata role and the target must be cut within a bounded time with
// ErrSlowRetrieval, and the trusted metadata must stay as it was.
func TestSlowRetrievalTrickle(t *testing.T) {
	modes := map[string]func(http.ResponseWriter, *http.Request, []byte){
		"trickle":              trickle,
		"headers then nothing": headersThenNothing,
	}
	for _, tt := range []struct {
		name string // the file the mirror serves slowly
		mode string
	}{
		{"timestamp.json", "trickle"},
		{"snapshot.json", "trickle"},
		{"targets.json", "trickle"},
		{"product.json", "trickle"}, // a delegated role
		{"root.json", "trickle"},    // root version N+1
		{"fw.img", "trickle"},       // the target
		{"timestamp.json", "headers then nothing"},
		{"fw.img", "headers then nothing"},
	} {
		t.Run(tt.mode+" "+tt.name, func(t *testing.T) {
			r, m, src := newSlowMirror(t, testRule)
			prod := trusttest.NewKey()
			r.Delegate("targets", metadata.DelegatedRole{Name: "product", Paths: []string{"product/*"}}, farFuture, prod)
			r.AddTarget("product", "product/fw.img", bytes.Repeat([]byte("firmware"), 1000))
			r.SignRole("product")
			r.BumpTargets("targets")
			r.UpdateSnapshot()
			c, store := newClient(t, r, src, t0)
			mustRefresh(t, c)
			if _, err := c.Target(context.Background(), "product/fw.img"); err != nil {
				t.Fatal(err) // stores the delegated role
			}

			// The repository moves on: new versions of every role.
			if tt.name == "root.json" {
				r.Root.Signed.Version++
				r.PublishRoot()
			}
			r.AddTarget("product", "product/fw.img", bytes.Repeat([]byte("firmware 2"), 1000))
			r.BumpTargets("product")
			r.BumpTargets("targets")
			r.UpdateSnapshot()
			before := map[string][]byte{}
			for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "product.json"} {
				before[name] = stored(t, store, name)
			}

			m.mode = modes[tt.mode]
			m.slow.Store(&tt.name)
			c = reopen(t, store, src, t0)
			ctx, cancel := context.WithTimeout(context.Background(), serverGiveUp)
			defer cancel()
			start := time.Now()
			err := c.Refresh(ctx)
			if err == nil {
				_, err = download(t, c, "product/fw.img")
			}
			took := time.Since(start)
			if !errors.Is(err, ErrSlowRetrieval) {
				t.Fatalf("got error %v after %v, want one wrapping ErrSlowRetrieval", err, took)
			}
			if took > slowBound {
				t.Errorf("the slow fetch took %v, want at most %v", took, slowBound)
			}
			t.Logf("refused after %v: %v", took.Round(time.Millisecond), err)
			// The slow role was not stored: its trusted copy is the old one
			// (the roles before it were verified and stored, as in 5.3).
			if tt.name != "fw.img" {
				if after := stored(t, store, tt.name); !bytes.Equal(after, before[tt.name]) {
					t.Errorf("the trusted %s changed although its retrieval failed", tt.name)
				}
			}
		})
	}
}

// TestSlowRetrievalMetadataDeadline: a mirror sends timestamp.json fast
// enough for the throughput rule but never ends it (whitespace, 2 KB/s).
// The per-file deadline must cut it before the size limit would.
func TestSlowRetrievalMetadataDeadline(t *testing.T) {
	opts := testRule
	opts.MetadataTimeout = time.Second
	r, m, src := newSlowMirror(t, opts)
	name := "timestamp.json"
	m.mode = func(w http.ResponseWriter, req *http.Request, data []byte) {
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte(" "), 100)
		give := time.After(serverGiveUp)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-req.Context().Done():
				return
			case <-give:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	m.slow.Store(&name)
	c, _ := newClient(t, r, src, t0)
	start := time.Now()
	err := c.Refresh(context.Background())
	took := time.Since(start)
	if !errors.Is(err, ErrSlowRetrieval) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got error %v after %v, want one wrapping ErrSlowRetrieval and context.DeadlineExceeded", err, took)
	}
	if took > slowBound {
		t.Errorf("took %v, want at most %v", took, slowBound)
	}
}

// TestWatchdogPausedTimeDoesNotCount: a consumer that spends longer than a
// window with each chunk (writing a slow flash) must not be mistaken for a
// slow mirror; only the time spent waiting for the network counts.
func TestWatchdogPausedTimeDoesNotCount(t *testing.T) {
	ctx, wd := NewWatchdog(context.Background(), Throughput{MinRate: 1000, Window: 100 * time.Millisecond, Grace: -1})
	defer wd.Stop()
	for range 3 {
		wd.Add(100) // the window's bytes arrive at once
		wd.Pause()
		time.Sleep(250 * time.Millisecond) // the consumer is busy
		wd.Resume()
	}
	wd.Pause()
	if err := wd.Err(); err != nil {
		t.Fatalf("watchdog fired while paused: %v", err)
	}
	// Waiting for the network with too few bytes trips it.
	wd.Resume()
	wd.Add(10)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog did not fire on a slow window")
	}
	if err := wd.Err(); !errors.Is(err, ErrSlowRetrieval) || !errors.Is(context.Cause(ctx), ErrSlowRetrieval) {
		t.Fatalf("Err() = %v, cause %v; want ErrSlowRetrieval", err, context.Cause(ctx))
	}
}

// TestHTTPOptionsRefused: negative durations are configuration errors.
func TestHTTPOptionsRefused(t *testing.T) {
	for _, o := range []HTTPOptions{
		{MetadataTimeout: -time.Second},
		{Throughput: Throughput{Window: -time.Second}},
	} {
		if _, err := NewHTTPSourceWithOptions("https://127.0.0.1/", "", o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
