package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
)

// metricValue extracts one sample from Prometheus text output.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetricsCountRequestsCheckinsInstallsAndBytes(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
	viewer := e.adminToken(RoleViewer)
	scrape := func() string {
		t.Helper()
		resp, data := e.do(e.client(nil), "GET", "/metrics", viewer, nil)
		wantStatus(t, resp, data, http.StatusOK)
		return string(data)
	}
	before := scrape()
	cert, _ := e.enroll()
	c := e.client(&cert)
	for range 3 {
		resp, data := e.do(c, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{State: "idle"})
		wantStatus(t, resp, data, http.StatusOK)
	}
	for _, k := range []string{"committed", "failed", "failed", "downloading"} {
		resp, data := e.do(c, "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: k})
		wantStatus(t, resp, data, http.StatusNoContent)
	}
	resp, data := e.do(c, "GET", "/repo/metadata/timestamp.json", "", nil)
	wantStatus(t, resp, data, http.StatusOK)
	after := scrape()

	for _, tt := range []struct {
		series string
		delta  float64
	}{
		{"airlock_checkins_total", 3},
		{`airlock_installs_total{outcome="committed"}`, 1},
		{`airlock_installs_total{outcome="failed"}`, 2},
		{`airlock_installs_total{outcome="rolled_back"}`, 0},
		{`airlock_http_requests_total{code="200",method="POST",route="/api/v1/checkin"}`, 3},
		{`airlock_http_requests_total{code="201",method="POST",route="/api/v1/enroll"}`, 1},
		{`airlock_http_request_duration_seconds_count{code="200",method="POST",route="/api/v1/checkin"}`, 3},
		{`airlock_http_request_duration_seconds_bucket{code="200",method="POST",route="/api/v1/checkin",le="+Inf"}`, 3},
		{`airlock_http_request_duration_seconds_count{code="201",method="POST",route="/api/v1/enroll"}`, 1},
		{`airlock_http_request_duration_seconds_count{code="200",method="GET",route="/repo/metadata/{path...}"}`, 1},
		{"airlock_served_bytes_total", float64(len(data))},
		{"airlock_devices", 1},
	} {
		if got := metricValue(t, after, tt.series) - metricValue(t, before, tt.series); got != tt.delta {
			t.Errorf("%s grew by %v, want %v", tt.series, got, tt.delta)
		}
	}

	t.Run("plain-HTTP loopback listener serves metrics without a token", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+e.srv.MetricsAddr().String()+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(data), "airlock_checkins_total 3") {
			t.Fatalf("metrics listener: %d", resp.StatusCode)
		}
	})
	t.Run("metrics listener must be loopback", func(t *testing.T) {
		cfg := e.cfg
		cfg.MetricsListen = "0.0.0.0:0"
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Fatalf("New with a public metrics address: %v", err)
		}
	})
	if !strings.Contains(e.logs.String(), `"route":"POST /api/v1/checkin"`) || !strings.Contains(e.logs.String(), `"device_id":"dev-`) {
		t.Fatalf("request log lacks route or device id:\n%s", e.logs.String())
	}
}

func TestGracefulShutdownLetsAnInFlightDownloadComplete(t *testing.T) {
	e := startServer(t, nil)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+"/repo/targets/"+e.payload, nil)
	resp, err := e.client(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	e.cancel() // SIGTERM: the CLI's context is cancelled
	e.cancel = nil
	time.Sleep(200 * time.Millisecond)
	if _, _, err := e.tryDo(e.client(nil), "GET", "/repo/metadata/root.json", "", nil); err == nil {
		t.Fatal("a new connection was accepted during shutdown")
	}
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("in-flight download cut: %v", err)
	}
	if [32]byte(h.Sum(nil)) != e.sum {
		t.Fatal("in-flight download corrupted")
	}
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestServerKilledMidDownloadRestartsAndTheDownloadResumes(t *testing.T) {
	e := startServer(t, func(c *Config) { c.ShutdownTimeout = time.Millisecond })
	cert, er := e.enroll()
	caFP := e.srv.CAFingerprint()
	deviceCA := e.srv.DeviceCAPEM()

	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+"/repo/targets/"+e.payload, nil)
	resp, err := e.client(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	etag := resp.Header.Get("ETag")
	var got bytes.Buffer
	io.CopyN(&got, resp.Body, 2<<20)
	if err := e.stop(); err == nil {
		t.Fatal("Serve returned nil although the shutdown deadline cut a download")
	}
	io.Copy(&got, resp.Body) // reads until the cut
	resp.Body.Close()
	if got.Len() >= payloadSize {
		t.Fatal("download was not interrupted")
	}

	// Restart on the same DATA directory and address.
	e.cfg.Listen = e.srv.Addr().String()
	e.start()
	if e.srv.CAFingerprint() != caFP || !bytes.Equal(e.srv.DeviceCAPEM(), deviceCA) {
		t.Fatal("restart changed the CA")
	}
	req, _ = http.NewRequestWithContext(t.Context(), "GET", e.base+"/repo/targets/"+e.payload, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", got.Len()))
	req.Header.Set("If-Range", etag)
	resp, err = e.client(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("resume: status %d", resp.StatusCode)
	}
	io.Copy(&got, resp.Body)
	if sha256.Sum256(got.Bytes()) != e.sum {
		t.Fatal("resumed download does not match the payload")
	}

	// The device enrolled before the restart is still known, with the same certificate.
	resp2, data := e.do(e.client(&cert), "GET", "/api/v1/device", "", nil)
	wantStatus(t, resp2, data, http.StatusOK)
	if !strings.Contains(string(data), er.DeviceID) {
		t.Fatalf("device after restart: %s", data)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := startServer(t, nil)
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no data dir", func(c *Config) { c.DataDir = "" }},
		{"no store", func(c *Config) { c.DB = nil }},
		{"cert without key", func(c *Config) { c.TLSCertFile = "x" }},
		{"poll interval too short", func(c *Config) { c.PollInterval = time.Millisecond }},
		{"http public URL", func(c *Config) { c.PublicURL = "http://x" }},
		{"repo without public dirs", func(c *Config) { c.RepoDir = t.TempDir() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.cfg
			cfg.Listen = "127.0.0.1:0"
			tt.mod(&cfg)
			if s, err := New(cfg); err == nil {
				s.Close()
				t.Fatal("New accepted a bad config")
			}
		})
	}
	_ = context.Background
}
