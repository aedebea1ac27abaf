package server

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
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
