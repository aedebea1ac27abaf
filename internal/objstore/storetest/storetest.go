// Package storetest is the conformance test every objstore.Store backend
// runs: the same assertions against the local directory and a real S3
// server.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/internal/objstore"
)

// Opts describes what to put.
func Opts(data []byte) objstore.PutOptions {
	sum := sha256.Sum256(data)
	return objstore.PutOptions{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

func put(t *testing.T, s objstore.Store, name string, data []byte) objstore.Info {
	t.Helper()
	info, err := s.Put(context.Background(), name, bytes.NewReader(data), Opts(data))
	if err != nil {
		t.Fatalf("Put(%q): %v", name, err)
	}
	return info
}

func read(t *testing.T, s objstore.Store, name string) []byte {
	t.Helper()
	o, err := s.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %q: %v", name, err)
	}
	return b
}

func names(infos []objstore.Info) []string {
	out := []string{}
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

// Run runs the conformance tests against the store newStore returns (a
// fresh, empty store per call).
func Run(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	ctx := context.Background()
	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t)
		data := []byte(`{"signed":{}}`)
		o := Opts(data)
		o.ContentType, o.CacheControl = "application/json", "no-cache"
		info, err := s.Put(ctx, "metadata/timestamp.json", bytes.NewReader(data), o)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(data)) || info.ETag == "" || info.Name != "metadata/timestamp.json" {
			t.Errorf("Put info = %+v", info)
		}
		st, err := s.Stat(ctx, "metadata/timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != int64(len(data)) || st.ETag != info.ETag || time.Since(st.ModTime) > time.Hour {
			t.Errorf("Stat = %+v, Put said %+v", st, info)
		}
		if st.SHA256 != "" && st.SHA256 != o.SHA256 {
			t.Errorf("Stat SHA256 = %q, want %q or empty", st.SHA256, o.SHA256)
		}
		if got := read(t, s, "metadata/timestamp.json"); !bytes.Equal(got, data) {
			t.Errorf("read %q, want %q", got, data)
		}
		put(t, s, "targets/acme/x1/1.0.0/ab.bin", []byte("payload"))
		put(t, s, "metadata/1.root.json", []byte("root"))
		put(t, s, "empty", nil)
		all, err := s.List(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"empty", "metadata/1.root.json", "metadata/timestamp.json", "targets/acme/x1/1.0.0/ab.bin"}, names(all)); diff != "" {
			t.Errorf("List(\"\") (-want +got):\n%s", diff)
		}
		meta, err := s.List(ctx, "metadata/", 0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"metadata/1.root.json", "metadata/timestamp.json"}, names(meta)); diff != "" {
			t.Errorf("List(metadata/) (-want +got):\n%s", diff)
		}
		if _, err := s.List(ctx, "", 3); !errors.Is(err, objstore.ErrTooMany) {
			t.Errorf("List with max 3 of 4 = %v, want ErrTooMany", err)
		}
		if got := read(t, s, "empty"); len(got) != 0 {
			t.Errorf("empty object read %q", got)
		}
		// Replace, then delete.
		put(t, s, "metadata/timestamp.json", []byte("v2"))
		if got := read(t, s, "metadata/timestamp.json"); string(got) != "v2" {
			t.Errorf("after replace read %q", got)
		}
		if err := s.Delete(ctx, "metadata/timestamp.json"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "metadata/timestamp.json"); err != nil {
			t.Errorf("deleting a missing object: %v", err)
		}
		if _, err := s.Stat(ctx, "metadata/timestamp.json"); !errors.Is(err, objstore.ErrNotExist) {
			t.Errorf("Stat after Delete = %v, want ErrNotExist", err)
		}
		if _, err := s.Open(ctx, "nothing/here"); !errors.Is(err, objstore.ErrNotExist) {
			t.Errorf("Open missing = %v, want ErrNotExist", err)
		}
	})

	t.Run("BadNames", func(t *testing.T) {
		s := newStore(t)
		for _, name := range []string{"", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "./a", ".put-1", "a/.b", "a\\b", "a\x00b", strings.Repeat("a", objstore.MaxNameLen+1)} {
			if _, err := s.Put(ctx, name, bytes.NewReader(nil), Opts(nil)); !errors.Is(err, objstore.ErrName) {
				t.Errorf("Put(%q) = %v, want ErrName", name, err)
			}
			if _, err := s.Open(ctx, name); !errors.Is(err, objstore.ErrName) {
				t.Errorf("Open(%q) = %v, want ErrName", name, err)
			}
			if _, err := s.Stat(ctx, name); !errors.Is(err, objstore.ErrName) {
				t.Errorf("Stat(%q) = %v, want ErrName", name, err)
			}
			if err := s.Delete(ctx, name); !errors.Is(err, objstore.ErrName) {
				t.Errorf("Delete(%q) = %v, want ErrName", name, err)
			}
		}
		if _, err := s.List(ctx, "../", 0); !errors.Is(err, objstore.ErrName) {
			t.Errorf("List(../) = %v, want ErrName", err)
		}
	})

	t.Run("Ranges", func(t *testing.T) {
		s := newStore(t)
		data := randBytes(3<<20+17, 1)
		put(t, s, "targets/big.bin", data)
		o, err := s.Open(ctx, "targets/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if o.Info().Size != int64(len(data)) {
			t.Fatalf("Info().Size = %d", o.Info().Size)
		}
		for _, r := range []struct{ off, n int64 }{{0, 10}, {1 << 20, 4096}, {int64(len(data)) - 5, 5}, {100, 1}, {2 << 20, 1 << 20}} {
			if _, err := o.Seek(r.off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, r.n)
			if _, err := io.ReadFull(o, buf); err != nil {
				t.Fatalf("range %d+%d: %v", r.off, r.n, err)
			}
			if !bytes.Equal(buf, data[r.off:r.off+r.n]) {
				t.Errorf("range %d+%d: wrong bytes", r.off, r.n)
			}
		}
		if end, err := o.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
			t.Errorf("Seek end = %d, %v", end, err)
		}
		if n, err := o.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("read at end = %d, %v; want 0, EOF", n, err)
		}
		if got := read(t, s, "targets/big.bin"); !bytes.Equal(got, data) {
			t.Error("whole read differs")
		}
	})

	t.Run("PutRefusesWrongContent", func(t *testing.T) {
		s := newStore(t)
		old := []byte("old content")
		put(t, s, "metadata/timestamp.json", old)
		good := []byte("new content that is longer")
		for name, c := range map[string]struct {
			body []byte
			o    objstore.PutOptions
		}{
			"wrong sha256": {[]byte("new content that is longeR"), Opts(good)},
			"short":        {good[:10], Opts(good)},
			"long":         {append(append([]byte{}, good...), 'x'), Opts(good)},
		} {
			_, err := s.Put(ctx, "metadata/timestamp.json", bytes.NewReader(c.body), c.o)
			if !errors.Is(err, objstore.ErrContent) {
				t.Errorf("%s: Put = %v, want ErrContent", name, err)
			}
			if got := read(t, s, "metadata/timestamp.json"); !bytes.Equal(got, old) {
				t.Errorf("%s: object is %q after a refused Put, want the old %q", name, got, old)
			}
			_, err = s.Put(ctx, "metadata/new.json", bytes.NewReader(c.body), c.o)
			if !errors.Is(err, objstore.ErrContent) {
				t.Errorf("%s: Put new = %v, want ErrContent", name, err)
			}
			if _, err := s.Stat(ctx, "metadata/new.json"); !errors.Is(err, objstore.ErrNotExist) {
				t.Errorf("%s: refused new object is visible: Stat = %v", name, err)
			}
		}
		bad := Opts(good)
		bad.SHA256 = strings.ToUpper(bad.SHA256)
		if _, err := s.Put(ctx, "x", bytes.NewReader(good), bad); !errors.Is(err, objstore.ErrContent) {
			t.Errorf("uppercase sha256: %v", err)
		}
		all, err := s.List(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"metadata/timestamp.json"}, names(all)); diff != "" {
			t.Errorf("List after refused puts (-want +got):\n%s", diff)
		}
	})

	t.Run("InterruptedPutIsNeverVisible", func(t *testing.T) {
		s := newStore(t)
		put(t, s, "targets/fw.bin", []byte("old"))
		data := randBytes(4<<20, 3)
		half := &gate{r: bytes.NewReader(data), stopAt: 2 << 20, reached: make(chan struct{}), release: make(chan struct{})}
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := s.Put(pctx, "targets/fw.bin", half, Opts(data))
			done <- err
		}()
		select {
		case <-half.reached:
		case err := <-done:
			t.Fatalf("Put ended before half its stream: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("Put did not read half its stream within 30s")
		}
		// Half the new object has been handed to the backend: readers see
		// the old object, whole.
		if got := read(t, s, "targets/fw.bin"); string(got) != "old" {
			t.Errorf("mid-put read %d bytes, want the old object", len(got))
		}
		if _, err := s.Stat(ctx, "targets/fw.bin.partial"); !errors.Is(err, objstore.ErrNotExist) {
			t.Errorf("Stat of an unrelated name: %v", err)
		}
		cancel()
		close(half.release)
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("cancelled Put succeeded")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("cancelled Put did not return within 30s")
		}
		if got := read(t, s, "targets/fw.bin"); string(got) != "old" {
			t.Errorf("after the interrupted put read %d bytes, want the old object", len(got))
		}
		all, err := s.List(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"targets/fw.bin"}, names(all)); diff != "" {
			t.Errorf("List after the interrupted put (-want +got):\n%s", diff)
		}
	})
}

// gate reads r until stopAt bytes, then signals reached and blocks until
// release; reads after release fail with a context-like error.
type gate struct {
	r       io.Reader
	n       int64
	stopAt  int64
	reached chan struct{}
	release chan struct{}
	once    bool
}

func (g *gate) Read(p []byte) (int, error) {
	if g.n >= g.stopAt {
		if !g.once {
			g.once = true
			close(g.reached)
		}
		<-g.release
		return 0, errors.New("interrupted")
	}
	if rest := g.stopAt - g.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	return n, err
}

// randBytes returns n reproducible pseudo-random bytes.
func randBytes(n int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed)})
	b := make([]byte, n)
	r.Read(b)
	return b
}
