package pki

import (
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/auth"
)

func TestServerCertificateCoversHostnamesAndIsRenewed(t *testing.T) {
	dir := t.TempDir()
	kek, _, err := auth.LoadOrCreateKEK(filepath.Join(dir, auth.KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrCreateCA(dir, CAFile, CAKeyFile, "test CA", kek)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	names := ServerNames([]string{"updates.example.com", "10.0.0.5"})
	cert, err := LoadOrIssueServerCert(dir, c, names, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	for _, n := range names {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: pool}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	same, _ := LoadOrIssueServerCert(dir, c, names, now)
	if !same.Leaf.Equal(cert.Leaf) {
		t.Fatal("a valid server certificate was replaced")
	}
	renewed, _ := LoadOrIssueServerCert(dir, c, names, now.Add(ServerCertValidity-ServerCertRenewBefore/2))
	if renewed.Leaf.Equal(cert.Leaf) {
		t.Fatal("an expiring server certificate was not renewed")
	}
	more, _ := LoadOrIssueServerCert(dir, c, ServerNames([]string{"new.example.com"}), now)
	if more.Leaf.VerifyHostname("new.example.com") != nil {
		t.Fatal("a new hostname did not reissue the certificate")
	}
}
