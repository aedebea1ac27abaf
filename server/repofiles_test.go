package server

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepositoryFilesServeRangesAndCacheHeaders(t *testing.T) {
	e := startServer(t, nil)
	c := e.client(nil)
	get := func(path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, data
	}
	target := "/repo/targets/" + e.payload

	resp, data := get(target, nil)
	wantStatus(t, resp, data, http.StatusOK)
	if sha256.Sum256(data) != e.sum || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("full payload: digest mismatch or Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	full, etag := data, resp.Header.Get("ETag")

	t.Run("range", func(t *testing.T) {
		resp, data := get(target, map[string]string{"Range": "bytes=100-199"})
		wantStatus(t, resp, data, http.StatusPartialContent)
		if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 100-199/%d", payloadSize); got != want || string(data) != string(full[100:200]) {
			t.Fatalf("Content-Range %q, want %q (or wrong bytes)", got, want)
		}
	})
	t.Run("suffix range", func(t *testing.T) {
		resp, data := get(target, map[string]string{"Range": "bytes=-10"})
		wantStatus(t, resp, data, http.StatusPartialContent)
		if string(data) != string(full[payloadSize-10:]) {
			t.Fatal("wrong suffix bytes")
		}
	})
	t.Run("unsatisfiable range", func(t *testing.T) {
		resp, data := get(target, map[string]string{"Range": fmt.Sprintf("bytes=%d-", payloadSize+1)})
		wantStatus(t, resp, data, http.StatusRequestedRangeNotSatisfiable)
	})
	t.Run("If-Range with the current ETag resumes", func(t *testing.T) {
		resp, data := get(target, map[string]string{"Range": "bytes=5-", "If-Range": etag})
		wantStatus(t, resp, data, http.StatusPartialContent)
	})
	t.Run("If-Range with a stale ETag sends the whole file", func(t *testing.T) {
		resp, data := get(target, map[string]string{"Range": "bytes=5-", "If-Range": `"stale"`})
		wantStatus(t, resp, data, http.StatusOK)
		if len(data) != payloadSize {
			t.Fatalf("got %d bytes", len(data))
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "HEAD", e.base+target, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != payloadSize {
			t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
		}
	})
	t.Run("metadata cache headers", func(t *testing.T) {
		for name, want := range map[string]string{
			"timestamp.json":  "no-cache",
			"root.json":       "no-cache",
			"1.root.json":     "public, max-age=31536000, immutable",
			"3.snapshot.json": "public, max-age=31536000, immutable",
		} {
			resp, data := get("/repo/metadata/"+name, nil)
			wantStatus(t, resp, data, http.StatusOK)
			if got := resp.Header.Get("Cache-Control"); got != want || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: Cache-Control %q, want %q", name, got, want)
			}
		}
	})
	t.Run("POST is not allowed", func(t *testing.T) {
		resp, data := e.do(c, "POST", "/repo/metadata/root.json", "", []byte(`{}`))
		wantStatus(t, resp, data, http.StatusMethodNotAllowed)
	})
}

func TestRepositoryPathTraversalIsRefused(t *testing.T) {
	e := startServer(t, nil)
	for _, p := range []string{
		"/repo/metadata/escape.json", // symlink out of the directory
		"/repo/metadata/%2e%2e/airlock-repo.json",
		"/repo/metadata/..%2f..%2fairlock-repo.json",
		"/repo/targets/..%2F..%2Fairlock-repo.json",
		"/repo/metadata/.hidden.json",
		"/repo/metadata/sub", // directory listing
		"/repo/metadata/",
		"/repo/targets/acme/x1/1.0.0/",
		"/repo/metadata/sub%5cx.json",
		"/repo/metadata/sub//x.json",
	} {
		t.Run(p, func(t *testing.T) {
			// Send the raw path: the client must not clean it.
			conn, err := tlsDial(e)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
			data, _ := io.ReadAll(conn)
			status := strings.SplitN(string(data), "\r\n", 2)[0]
			if strings.Contains(string(data), "SECRET-CONFIG") || strings.Contains(status, " 200 ") {
				t.Fatalf("served: %s", status)
			}
		})
	}
	resp, data := e.do(e.client(nil), "GET", "/repo/metadata/sub/x.json", "", nil)
	wantStatus(t, resp, data, http.StatusOK) // a real nested file is still served
}

func tlsDial(e *testEnv) (net.Conn, error) {
	return tlsDialConf(e, nil)
}

// TestTransparencyLogIsServed: the log's static files (C2SP tlog-tiles)
// under /repo/log/, quietly logged, and tessera's dot-named state never.
func TestTransparencyLogIsServed(t *testing.T) {
	e := startServer(t, nil)
	logDir := filepath.Join(e.cfg.RepoDir, "public", "log")
	for name, data := range map[string]string{
		"checkpoint":                          "airlock.log/test\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— airlock.log/test AAAA\n",
		"tile/entries/000.p/1":                "\x00\x02{}",
		".state/treeState":                    "secret-ish",
		"releases/" + strings.Repeat("a", 64): `{"index":0}`,
	} {
		p := filepath.Join(logDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := e.client(nil)
	for path, want := range map[string]int{
		"/repo/log/checkpoint":                          http.StatusOK,
		"/repo/log/tile/entries/000.p/1":                http.StatusOK,
		"/repo/log/releases/" + strings.Repeat("a", 64): http.StatusOK,
		"/repo/log/.state/treeState":                    http.StatusNotFound,
		"/repo/log/missing":                             http.StatusNotFound,
	} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d %q, want %d", path, resp.StatusCode, data, want)
		}
	}
	if !quietRoutes["GET /repo/log/{path...}"] {
		t.Error("the log route is not quiet: every device poll would log a line")
	}
}
