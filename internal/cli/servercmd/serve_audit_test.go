package servercmd

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/internal/servicetest"
)

// waitLog waits until r's log has a line with msg.
func waitLog(t *testing.T, r *serveRun, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.stderr.String(), `"msg":"`+msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", msg, r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeReplicasShareTheAuditDir: two `airlock serve` on one database
// and one --audit-dir both start; the first holds the audit log, the second
// only writes the outbox until the first stops, then takes over and
// drains what it committed.
func TestServeReplicasShareTheAuditDir(t *testing.T) {
	shared := t.TempDir()
	dir, key, db := filepath.Join(shared, "audit"), filepath.Join(shared, "audit.key"), filepath.Join(shared, "airlock.db")
	args := []string{"--audit-dir", dir, "--audit-key", key, "--db", db, "--kek-file", filepath.Join(shared, "kek.key")}
	r1 := startServe(t, nil, args...)
	waitLog(t, r1, "holding the audit log")
	r2 := startServe(t, nil, args...)
	waitLog(t, r2, "the audit log is held by another process")
	waitLog(t, r2, "listening")
	r1.stop(t)
	waitLog(t, r2, "holding the audit log")

	// A failed authentication on the second: audited through the outbox.
	var url string
	for _, rec := range servicetest.JSONLines(t, r2.stderr.String()) {
		if rec["msg"] == "listening" {
			url, _ = rec["url"].(string)
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(r2.tmp, "data", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, _ := http.NewRequest("GET", url+"/api/v1/admin/devices", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r2.stop(t)

	pub, err := audit.LoadPublic(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(dir, pub); err != nil {
		t.Fatal(err)
	}
	es, err := audit.Query(dir, audit.Filter{Action: audit.AuthLoginFailed})
	if err != nil || len(es) != 1 || es[0].Details["outbox_id"] == "" {
		t.Fatalf("auth.login_failed entries %v, %v; want one, from the outbox", es, err)
	}
}
