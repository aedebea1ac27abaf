package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/internal/objstore/s3store"
	"github.com/airlockfw/airlock/internal/objstore/s3test"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/server/repofiles"
	"github.com/airlockfw/airlock/trust"
)

// checkPushOrder asserts the order repofiles.Push promises: payloads, then
// metadata, snapshots after roles, timestamp.json last.
func checkPushOrder(t *testing.T, names []string) {
	t.Helper()
	firstMeta, lastTarget, lastSnap, firstRole := -1, -1, -1, len(names)
	for i, n := range names {
		switch {
		case strings.HasPrefix(n, "targets/"):
			lastTarget = i
		case strings.HasSuffix(n, ".snapshot.json"):
			lastSnap = i
		case n != "metadata/timestamp.json" && !strings.HasSuffix(n, "root.json"):
			firstRole = min(firstRole, i)
		}
		if strings.HasPrefix(n, "metadata/") && firstMeta < 0 {
			firstMeta = i
		}
	}
	if lastTarget > firstMeta && firstMeta >= 0 {
		t.Errorf("a payload was pushed after metadata: %q", names)
	}
	if lastSnap >= 0 && firstRole > lastSnap {
		t.Errorf("roles pushed after a snapshot: %q", names)
	}
	if len(names) > 0 && names[len(names)-1] != "metadata/timestamp.json" {
		t.Errorf("timestamp.json is not pushed last: %q", names)
	}
}

// TestServeRepositoryFromS3 pushes a real signed repository to a real S3
// server (versitygw over TLS), serves it from the bucket with two servers
// (replicas sharing the bucket, no RepoDir), and lets the device-side TUF
// client refresh, download the payload and read a byte range through them.
// A release pushed later is served by the running servers without a restart.
func TestServeRepositoryFromS3(t *testing.T) {
	ctx := context.Background()
	s3srv := s3test.Start(t)
	st, err := s3store.New(ctx, s3srv.Bucket(t, "fw-updates", "acme/prod"))
	if err != nil {
		t.Fatal(err)
	}
	v := repotest.New(t, repotest.Options{})
	v.Release("1.0.0", 1, repotest.Image(1, 3<<20+123), nil)
	src, err := objstore.OpenDir(v.Repo.PublicDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	res, err := repofiles.Push(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	checkPushOrder(t, res.Uploaded)
	local, err := src.List(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uploaded) != len(local) || len(res.Skipped) != 0 {
		t.Errorf("first push uploaded %d and skipped %d of %d files", len(res.Uploaded), len(res.Skipped), len(local))
	}
	again, err := repofiles.Push(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Uploaded) != 0 || len(again.Skipped) != len(local) {
		t.Errorf("second push uploaded %q; want nothing (idempotent)", again.Uploaded)
	}
	// The bucket keeps what a CDN needs: type and cache policy.
	ts, err := st.Stat(ctx, "metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	if ts.ContentType != "application/json" || ts.CacheControl != repofiles.CacheRevalidate {
		t.Errorf("timestamp.json stored with type %q, cache %q", ts.ContentType, ts.CacheControl)
	}

	useBucket := func(c *Config) { c.RepoDir, c.RepoStore = "", st }
	e1 := startServer(t, useBucket)
	e2 := startServer(t, useBucket)

	rels, err := v.Repo.Releases(v.Product)
	if err != nil || len(rels) != 1 {
		t.Fatalf("releases: %v %v", rels, err)
	}
	want, err := os.ReadFile(targetFile(t, v.Repo.PublicDir(), rels[0].TargetPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*testEnv{e1, e2} {
		c := newRepoClient(t, e, v.FactoryRoot)
		tf, err := c.Target(ctx, rels[0].TargetPath)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := c.Download(ctx, tf, &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: downloaded payload differs", e.base)
		}
		// A ranged read, as a device resuming or fetching delta blocks.
		rs := trust.NewHTTPSource(e.base+"/repo/metadata", e.base+"/repo/targets", e.client(nil)).(trust.RangeSource)
		hashPrefix := hex.EncodeToString(tf.Hashes["sha256"])
		off, n := int64(1<<20+7), int64(65536)
		rd, err := rs.OpenTargetRange(ctx, rels[0].TargetPath, hashPrefix, int64(len(want)), off, n)
		if err != nil {
			t.Fatal(err)
		}
		part, err := io.ReadAll(rd)
		rd.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(part, want[off:off+n]) {
			t.Errorf("%s: range %d+%d differs", e.base, off, n)
		}
	}
	// Conditional requests revalidate against the bucket's ETag, the same
	// on both replicas.
	var etags []string
	for _, e := range []*testEnv{e1, e2} {
		resp, _ := e.do(e.client(nil), "GET", "/repo/metadata/timestamp.json", "", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != repofiles.CacheRevalidate {
			t.Fatalf("timestamp.json: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		etags = append(etags, resp.Header.Get("ETag"))
		req, _ := http.NewRequest("GET", e.base+"/repo/metadata/timestamp.json", nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		r2, err := e.client(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match: %d, want 304", r2.StatusCode)
		}
	}
	if etags[0] == "" || etags[0] != etags[1] {
		t.Errorf("replicas disagree on the ETag: %q", etags)
	}
	for _, p := range []string{"/repo/metadata/..%2fsecret", "/repo/targets/.put-x", "/repo/metadata/nothing.json"} {
		if resp, _ := e1.do(e1.client(nil), "GET", p, "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}

	// A new release, pushed: both running servers serve it.
	v.Release("1.1.0", 2, repotest.Image(2, 1<<20), nil)
	if _, err := repofiles.Push(ctx, src, st); err != nil {
		t.Fatal(err)
	}
	rels, err = v.Repo.Releases(v.Product)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rels, func(r repo.ReleaseInfo) bool { return r.Version == "1.1.0" })
	if i < 0 {
		t.Fatalf("no 1.1.0 in %+v", rels)
	}
	for _, e := range []*testEnv{e1, e2} {
		c := newRepoClient(t, e, v.FactoryRoot)
		if _, err := c.Target(ctx, rels[i].TargetPath); err != nil {
			t.Errorf("%s after the second push: %v", e.base, err)
		}
	}

	// The bucket goes away: repository requests answer 503 with
	// Retry-After (not a cacheable 404), within a few seconds; the device
	// API does not depend on the bucket.
	s3srv.Kill()
	start := time.Now()
	resp, _ := e1.do(e1.client(nil), "GET", "/repo/metadata/timestamp.json", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != repofiles.RetryAfterUnavailable {
		t.Errorf("with the bucket down: %d, Retry-After %q; want 503", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("a request with the bucket down took %v", d)
	}
	t.Logf("503 with the bucket down after %v", time.Since(start).Round(time.Millisecond))
}

// newRepoClient is a device-side TUF client of the server's repository,
// anchored in the factory root.
func newRepoClient(t *testing.T, e *testEnv, root []byte) *trust.Client {
	t.Helper()
	ms := trust.NewMemStore()
	if err := ms.Put("root.json", root); err != nil {
		t.Fatal(err)
	}
	c, err := trust.New(ms, trust.NewHTTPSource(e.base+"/repo/metadata", e.base+"/repo/targets", e.client(nil)), trust.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// targetFile finds the consistent-snapshot file of targetPath.
func targetFile(t *testing.T, pub, targetPath string) string {
	t.Helper()
	dir, base := filepath.Split(targetPath)
	m, err := filepath.Glob(filepath.Join(pub, "targets", dir, "*."+base))
	if err != nil || len(m) != 1 {
		t.Fatalf("target file of %s: %v %v", targetPath, m, err)
	}
	return m[0]
}

// TestTUFClientReadsPushedBucketDirectly: what `repo push` leaves in a
// bucket is a complete TUF repository for a CDN or any HTTP reader. The
// bucket is made publicly readable (a bucket policy, as for a CDN origin)
// and the device-side TUF client refreshes and downloads straight from the
// S3 server's HTTPS endpoint, anonymously, with a ranged read too.
func TestTUFClientReadsPushedBucketDirectly(t *testing.T) {
	ctx := context.Background()
	s3srv := s3test.Start(t)
	st, err := s3store.New(ctx, s3srv.Bucket(t, "cdn-origin", "fw"))
	if err != nil {
		t.Fatal(err)
	}
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::cdn-origin/*"]}]}`
	if err := s3srv.Client(t).SetBucketPolicy(ctx, "cdn-origin", policy); err != nil {
		t.Fatalf("public-read bucket policy: %v", err)
	}
	v := repotest.New(t, repotest.Options{})
	v.Release("1.0.0", 1, repotest.Image(3, 2<<20), nil)
	src, err := objstore.OpenDir(v.Repo.PublicDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := repofiles.Push(ctx, src, st); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s3srv.RootCAs, MinVersion: tls.VersionTLS12}}}
	base := s3srv.Endpoint + "/cdn-origin/fw"
	ms := trust.NewMemStore()
	if err := ms.Put("root.json", v.FactoryRoot); err != nil {
		t.Fatal(err)
	}
	hs := trust.NewHTTPSource(base+"/metadata", base+"/targets", hc)
	c, err := trust.New(ms, hs, trust.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("refresh from the bucket: %v", err)
	}
	rels, err := v.Repo.Releases(v.Product)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := c.Target(ctx, rels[0].TargetPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(targetFile(t, v.Repo.PublicDir(), rels[0].TargetPath))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := c.Download(ctx, tf, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Error("payload downloaded from the bucket differs")
	}
	rd, err := hs.(trust.RangeSource).OpenTargetRange(ctx, rels[0].TargetPath, hex.EncodeToString(tf.Hashes["sha256"]), int64(len(want)), 12345, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	part, err := io.ReadAll(rd)
	if err != nil || !bytes.Equal(part, want[12345:12345+4096]) {
		t.Errorf("ranged read from the bucket: %d bytes, %v", len(part), err)
	}
}
