package agent

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/trust"
)

// The slow mirror tests run the agent with stall_timeout slowStall and
// min_throughput slowMinRate: every slowStall must bring 70 bytes, a
// 2 bytes/s trickle brings one or two. One byte per trickleEvery is more
// often than slowStall, so the old no-byte stall rule alone never fires.
const (
	slowStall    = "700ms"
	slowMinRate  = 100
	trickleEvery = 500 * time.Millisecond
	// slowBound is how long one poll against a slow mirror may take: the
	// payload is cut, resumed five times and cut again, ~6×700 ms.
	slowBound = 15 * time.Second
	// slowGiveUp bounds each poll and every slow handler.
	slowGiveUp = 40 * time.Second
)

// slowMirror serves a repository's public directory over TLS; the file
// whose name (version or hash prefix removed) is slow is served by mode.
type slowMirror struct {
	files http.Handler
	slow  atomic.Pointer[string]
	mode  func(w http.ResponseWriter, r *http.Request)
	hits  atomic.Int64 // requests for the slow file
}

// unprefixed is a served file name without its version or hash prefix:
// "/metadata/3.snapshot.json" -> "snapshot.json",
// "/targets/.../<sha256>.firmware.img" -> "firmware.img".
func unprefixed(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if p, rest, ok := strings.Cut(base, "."); ok && strings.Contains(rest, ".") && strings.Trim(p, "0123456789abcdef") == "" {
		return rest
	}
	return base
}

func (m *slowMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := m.slow.Load(); p != nil && unprefixed(r.URL.Path) == *p {
		m.hits.Add(1)
		m.mode(w, r)
		return
	}
	m.files.ServeHTTP(w, r)
}

// trickleWriter writes one byte per trickleEvery: 2 bytes/s.
type trickleWriter struct {
	http.ResponseWriter
	ctx context.Context
}

func (tw trickleWriter) Write(p []byte) (int, error) {
	give := time.After(slowGiveUp)
	for i := range p {
		if _, err := tw.ResponseWriter.Write(p[i : i+1]); err != nil {
			return i, err
		}
		tw.ResponseWriter.(http.Flusher).Flush()
		select {
		case <-tw.ctx.Done():
			return i + 1, tw.ctx.Err()
		case <-give:
			return i + 1, errors.New("test server gave up")
		case <-time.After(trickleEvery):
		}
	}
	return len(p), nil
}

// trickle serves the real file (Range requests included) at 2 bytes/s.
func (m *slowMirror) trickle(w http.ResponseWriter, r *http.Request) {
	m.files.ServeHTTP(trickleWriter{w, r.Context()}, r)
}

// headersThenNothing answers 200, then sends no byte.
func (m *slowMirror) headersThenNothing(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(slowGiveUp):
	}
}

// TestSlowRetrievalFromMirror runs one poll against a real signed
// repository on a loopback HTTPS mirror that serves one file at 2 bytes/s
// (or sends its headers and then nothing). Every poll must end within
// slowBound with an error wrapping trust.ErrSlowRetrieval, with the
// device untouched; the next poll against a good mirror installs.
func TestSlowRetrievalFromMirror(t *testing.T) {
	tests := []struct {
		name, file, mode string
		rotateRoot       bool // publish 2.root.json
		rotateProduct    bool // publish a new targets.json
	}{
		{name: "timestamp trickle", file: "timestamp.json", mode: "trickle"},
		{name: "snapshot trickle", file: "snapshot.json", mode: "trickle"},
		{name: "targets trickle", file: "targets.json", mode: "trickle", rotateProduct: true},
		{name: "delegated role trickle", file: "acme.router-x1.json", mode: "trickle"},
		{name: "next root trickle", file: "root.json", mode: "trickle", rotateRoot: true},
		{name: "payload trickle", file: "firmware.img", mode: "trickle"},
		{name: "timestamp headers then nothing", file: "timestamp.json", mode: "silent"},
		{name: "payload headers then nothing", file: "firmware.img", mode: "silent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVendor(t)
			v.release("1.0.0", 1)
			initial := v.bundle("1.0.0")
			if tt.rotateRoot {
				rotateRoot(t, v)
			}
			if tt.rotateProduct {
				rotateProduct(t, v)
			}
			v.release("1.1.0", 1)
			pki := newPKI(t, "mirror")
			m := &slowMirror{files: http.FileServer(http.Dir(v.r.PublicDir()))}
			m.mode = m.trickle
			if tt.mode == "silent" {
				m.mode = m.headersThenNothing
			}
			srv := startTLS(t, "127.0.0.1:0", m, pki.server, nil)
			devCfg := newDevice(t, v, initial)
			cfgPath := repoConfig(t, devCfg, srv.URL, pki.writeCA(t, t.TempDir()), slowStall)
			appendConfig(t, cfgPath, fmt.Sprintf("min_throughput = %d\n", slowMinRate))
			a := newTestAgent(t, cfgPath)
			before := fingerprint(t, devCfg)

			m.slow.Store(&tt.file)
			ctx, cancel := context.WithTimeout(context.Background(), slowGiveUp)
			defer cancel()
			start := time.Now()
			res, err := a.RunOnce(ctx)
			took := time.Since(start)
			if !errors.Is(err, trust.ErrSlowRetrieval) {
				t.Fatalf("poll = %+v, %v after %v; want an error wrapping trust.ErrSlowRetrieval", res, err, took)
			}
			t.Logf("refused after %v: %v", took.Round(time.Millisecond), err)
			if m.hits.Load() == 0 {
				t.Fatalf("the mirror never served %s", tt.file)
			}
			if tt.file == "firmware.img" && !errors.Is(err, ErrStalled) {
				t.Errorf("payload error %v does not wrap ErrStalled", err)
			}
			if took > slowBound {
				t.Errorf("the poll took %v, want at most %v", took, slowBound)
			}
			if res == nil || res.Action != ActionFailed {
				t.Errorf("result = %+v, want failed", res)
			}
			if after := fingerprint(t, devCfg); after != before {
				t.Fatal("a slow mirror changed the active slot, boot control, counter or trusted metadata")
			}

			m.slow.Store(nil)
			res, err = a.RunOnce(context.Background())
			if err != nil || res.Action != ActionCommitted {
				t.Fatalf("poll against a good mirror = %+v, %v; want committed", res, err)
			}
		})
	}
}

// rotateRoot replaces the root key, so that the repository publishes
// 2.root.json, the file the device asks for first.
func rotateRoot(t *testing.T, v *vendor) {
	t.Helper()
	newRoot := repotest.GenKey(t)
	oldID, err := keys.KeyID(v.rt.Root.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.r.Rotate(repo.RotateOptions{Role: "root", Add: []crypto.PublicKey{newRoot.Public()}, Remove: []string{oldID},
		Threshold: 1, OldSigners: []crypto.Signer{v.rt.Root}, NewSigners: []crypto.Signer{newRoot}}); err != nil {
		t.Fatal(err)
	}
	v.publish()
}

// rotateProduct replaces the product key, so that the repository publishes
// a new targets.json (the product role's keys live there).
func rotateProduct(t *testing.T, v *vendor) {
	t.Helper()
	newProduct := repotest.GenKey(t)
	var old []string
	for _, k := range v.rt.ProductSigners {
		id, err := keys.KeyID(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, id)
	}
	if _, err := v.r.Rotate(repo.RotateOptions{Role: testProduct, Add: []crypto.PublicKey{newProduct.Public()}, Remove: old,
		Threshold: 1, OldSigners: []crypto.Signer{v.rt.Targets}, NewSigners: []crypto.Signer{newProduct}}); err != nil {
		t.Fatal(err)
	}
	v.publish()
	v.rt.ProductSigners = []crypto.Signer{newProduct}
}

func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestResumeFromByteZero: the first connection drops after the response
// headers, before any body byte. The retry (no Range: nothing was
// received) gets a 200 with the whole file, which is simply a new start.
func TestResumeFromByteZero(t *testing.T) {
	e := newRepoEnv(t)
	var n atomic.Int64
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		if n.Add(1) > 1 {
			return false
		}
		return cutAfter(0)(w, r, data)
	})
	devCfg, a := e.device(t, "2s")
	res, err := a.RunOnce(context.Background())
	if err != nil || res.Action != ActionCommitted {
		t.Fatalf("poll = %+v, %v; want committed", res, err)
	}
	if v, _ := deviceVersion(t, devCfg); v != "1.1.0" {
		t.Fatalf("device runs %q, want 1.1.0", v)
	}
	if rs := e.h.targetRanges(); len(rs) != 2 || rs[0] != "" || rs[1] != "" {
		t.Fatalf("target requests (Range) = %q, want two full GETs", rs)
	}
}

// TestDownloadDeadlineIsNamed: when the download's deadline passes in the
// middle of the payload, the stream's error says so (ErrDeadline, wrapping
// context.DeadlineExceeded) instead of ending early, which the pipeline
// would report as a truncated or undecodable payload.
func TestDownloadDeadlineIsNamed(t *testing.T) {
	e := newRepoEnv(t)
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:100<<10])
		w.(http.Flusher).Flush()
		select { // a slow server: no byte before the deadline
		case <-r.Context().Done():
		case <-time.After(slowGiveUp):
		}
		return true
	})
	pool, err := loadCAPool(durable.OS, e.caPath, "")
	if err != nil {
		t.Fatal(err)
	}
	src := NewHTTPSource(e.srv.URL+"/metadata", e.srv.URL+"/targets", newHTTPClient(pool, "", nil, nil),
		DownloadOptions{StallTimeout: time.Minute, MinThroughput: -1, ResumeBackoff: 10 * time.Millisecond})
	path, prefix := targetOf(t, e, "1.1.0")
	// Several rounds: the transport sometimes ends a response cut by a
	// deadline with a clean io.EOF, which must not pass as the end.
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		rc, err := src.OpenTarget(ctx, path, prefix)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		got, err := io.Copy(io.Discard, rc)
		rc.Close()
		cancel()
		if !errors.Is(err, ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d, after %d bytes: error %v, want one wrapping ErrDeadline and context.DeadlineExceeded", i, got, err)
		}
		if !strings.Contains(err.Error(), "deadline passed") {
			t.Errorf("error %q does not say the deadline passed", err)
		}
		if got != 100<<10 {
			t.Errorf("read %d bytes, want the %d the server sent", got, 100<<10)
		}
	}
}

// targetOf returns the target path and hash prefix of a release.
func targetOf(t *testing.T, e *repoEnv, version string) (string, string) {
	t.Helper()
	infos, err := e.v.r.Releases(testProduct)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Version == version {
			return in.TargetPath, in.SHA256
		}
	}
	t.Fatalf("no release %s", version)
	return "", ""
}
