package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/repo"
)

// deltaEnv is a repository with 1.0.0 and 1.1.0, where 1.1.0 changes a few
// blocks of 1.0.0's image, shifts a run of them and appends some, served
// over TLS with range support; the device runs 1.0.0.
type deltaEnv struct {
	*repoEnv
	newImg  []byte
	payload int64 // bytes of 1.1.0's payload file
}

func newDeltaEnv(t *testing.T, compress bool) *deltaEnv {
	t.Helper()
	e := &repoEnv{v: newVendor(t), pki: newPKI(t, "repo")}
	old := testImage(7, testImageSize-64<<10)
	newImg := bytes.Clone(old)
	for _, off := range []int{5000, 200_000, 400_123} {
		newImg[off] ^= 0xff
	}
	newImg = append(newImg[:300<<10:300<<10], append(make([]byte, 8192), newImg[300<<10:]...)...)
	newImg = append(newImg, testImage(8, 40<<10)...)
	mod := func(o *repo.ReleaseOptions) {
		if compress {
			o.Compress, o.FrameSize = repo.CompressZstd, 64<<10
		}
	}
	e.v.rt.Release("1.0.0", 1, old, mod)
	e.initial = e.v.bundle("1.0.0")
	e.v.rt.Release("1.1.0", 1, newImg, mod)
	infos, err := e.v.r.Releases(testProduct)
	if err != nil {
		t.Fatal(err)
	}
	de := &deltaEnv{repoEnv: e, newImg: newImg}
	for _, in := range infos {
		if in.Version == "1.1.0" {
			de.payload = in.Length
		}
	}
	e.h = newRepoHandler(e.v.r.PublicDir())
	e.srv = startTLS(t, "127.0.0.1:0", e.h, e.pki.server, nil)
	e.caPath = e.pki.writeCA(t, t.TempDir())
	return de
}

// agent returns a device at 1.0.0 and an agent that installs by delta.
func (e *deltaEnv) agent(t *testing.T) (string, *Agent) {
	t.Helper()
	devCfg := newDevice(t, e.v, e.initial)
	p := repoConfig(t, devCfg, e.srv.URL, e.caPath, "2s")
	text, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.ReplaceAll(text, []byte("full_download = true\n"), nil), 0o644); err != nil {
		t.Fatal(err)
	}
	return devCfg, newTestAgent(t, p)
}

func (e *deltaEnv) committed(t *testing.T, devCfg string, a *Agent) *Result {
	t.Helper()
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
	return res
}

// TestDeltaOverRanges: the device fetches only what its active slot lacks,
// by range requests, and the installed slot verifies at boot (the agent
// boots and commits it).
func TestDeltaOverRanges(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("zstd=", compress), func(t *testing.T) {
			e := newDeltaEnv(t, compress)
			devCfg, a := e.agent(t)
			e.committed(t, devCfg, a)
			for _, r := range e.h.targetRanges() {
				if !strings.HasPrefix(r, "bytes=") {
					t.Fatalf("target requests %q: a whole download", e.h.targetRanges())
				}
			}
			sent := e.h.sent.Load()
			t.Logf("%d requests, %d of the payload's %d bytes", len(e.h.targetRanges()), sent, e.payload)
			// Raw: the changed blocks and the tree. Compressed: whole 64 KiB
			// frames, 5 of this small image's 9.
			limit := e.payload / 3
			if compress {
				limit = e.payload * 2 / 3
			}
			if sent > limit {
				t.Errorf("sent %d bytes, want at most %d of the %d-byte payload", sent, limit, e.payload)
			}
		})
	}
}

// TestDeltaResumesACutRange: a range cut midway is resumed inside the range.
func TestDeltaResumesACutRange(t *testing.T) {
	e := newDeltaEnv(t, false)
	cut, resume := false, "" // the Range a resume of the cut range asks for
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		rg := r.Header.Get("Range")
		var first, last int
		if cut || !strings.HasPrefix(rg, "bytes=") {
			return false
		}
		if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &first, &last); err != nil || last-first < 100 || first == 0 {
			return false // the tree range, or a short one: served
		}
		cut = true
		resume = fmt.Sprintf("bytes=%d-%d", first+(last-first)/2, last)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(last-first+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[first : first+(last-first)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	devCfg, a := e.agent(t)
	e.committed(t, devCfg, a)
	if !cut {
		t.Fatal("no range was cut")
	}
	if rs := e.h.targetRanges(); !slices.Contains(rs, resume) {
		t.Errorf("target requests %q: want the cut range resumed with %q", rs, resume)
	}
}

// TestDeltaServerIgnoringRanges: a server that answers ranges with the
// whole file makes the device download the whole payload instead.
func TestDeltaServerIgnoringRanges(t *testing.T) {
	e := newDeltaEnv(t, false)
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		if r.Header.Get("Range") == "" {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
		return true
	})
	devCfg, a := e.agent(t)
	e.committed(t, devCfg, a)
	rs := e.h.targetRanges()
	if len(rs) != 2 || rs[1] != "" {
		t.Errorf("target requests %q: want the refused range, then one whole download", rs)
	}
}

// TestDeltaLyingServer: ranges with the right headers and wrong bytes fail
// the install; the device keeps running 1.0.0, unchanged.
func TestDeltaLyingServer(t *testing.T) {
	e := newDeltaEnv(t, false)
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		var first, last int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last); err != nil || first == 0 {
			return false
		}
		body := bytes.Clone(data[first : last+1])
		body[0] ^= 1
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(body)
		return true
	})
	devCfg, a := e.agent(t)
	before := fingerprint(t, devCfg)
	res, err := a.RunOnce(context.Background())
	if err == nil && res.Action == ActionCommitted {
		t.Fatalf("a lying range server installed: %+v", res)
	}
	if !strings.Contains(fmt.Sprint(err, res), "does not match the signed hash tree") {
		t.Errorf("result %+v, %v: want the block refused against the tree", res, err)
	}
	if v, _ := deviceVersion(t, devCfg); v != "1.0.0" {
		t.Fatalf("device runs %q", v)
	}
	if after := fingerprint(t, devCfg); after != before {
		t.Errorf("the refused install changed the device:\n%s\n%s", before, after)
	}
}

// TestDeltaDamagedRunningIndex: when the running release's tree in the
// active slot does not verify, the device downloads the whole payload; it
// never uses the active slot's blocks on an unverified index.
func TestDeltaDamagedRunningIndex(t *testing.T) {
	e := newDeltaEnv(t, false)
	devCfg, a := e.agent(t)
	slotA := filepath.Join(filepath.Dir(devCfg), "slot-a.img")
	f, err := os.OpenFile(slotA, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The tree follows the 1.0.0 image (a whole number of blocks).
	if _, err := f.WriteAt([]byte{0x5a}, int64(testImageSize-64<<10)+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.committed(t, devCfg, a)
	rs := e.h.targetRanges()
	if len(rs) != 1 || rs[0] != "" {
		t.Errorf("target requests %q: want one whole download", rs)
	}
}
