// Package s3test runs a real S3-compatible server for tests: versitygw's
// POSIX gateway (github.com/versity/versitygw), on 127.0.0.1 with TLS (a
// throwaway self-signed certificate), random root credentials and a fresh
// directory. It is test infrastructure and never holds real data.
//
// The binary is found, in order, at $AIRLOCK_VERSITYGW, as "versitygw" on
// PATH, or in the user cache directory
// (~/.cache/airlock-test/versitygw-<Version>/versitygw); if absent it is
// built there from the Go module proxy with `go install` (a few minutes,
// once; scripts/test.sh does it before the tests). When it cannot be
// obtained, Start skips the test, unless AIRLOCK_REQUIRE_TOOLS=1 or CI is
// set: then it fails.
package s3test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"github.com/airlockfw/airlock/internal/testbin"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/airlockfw/airlock/internal/objstore/s3store"
)

// Version is the versitygw release built when none is installed (the
// newest that builds with the module's Go version).
const Version = "v1.8.0"

// Module is the package built by go install.
const Module = "github.com/versity/versitygw/cmd/versitygw"

// Timeouts.
const (
	BuildTimeout = 15 * time.Minute
	StartTimeout = 30 * time.Second
)

// tool is the binary the tests run.
var tool = &testbin.Tool{Name: "versitygw", Module: Module, Version: Version, EnvVar: "AIRLOCK_VERSITYGW", BuildTimeout: BuildTimeout}

// Server is a running versitygw POSIX gateway.
type Server struct {
	// Endpoint is "https://127.0.0.1:PORT".
	Endpoint string
	// RootCAs trusts the server's certificate.
	RootCAs *x509.CertPool
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Dir is the gateway's root directory (one subdirectory per bucket).
	Dir  string
	kill func()
}

// Start starts a gateway for the test and stops it at cleanup. It skips
// (or fails under scripts/test.sh and in CI: testbin.Required) when the binary is unavailable.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := tool.Require(t)
	dir := t.TempDir()
	s := &Server{Dir: filepath.Join(dir, "root"), AccessKey: "airlock" + randHex(6), SecretKey: randHex(20)}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var err error
	if s.RootCAs, err = writeCert(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("versitygw log:\n%s", b)
			}
		}
	})
	// The port is picked free, then bound by versitygw: another process
	// may take it in between, so a gateway that exits at once is retried
	// on another port.
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		s.Endpoint = "https://" + addr
		cmd := exec.Command(bin, "--port", addr, "--cert", certFile, "--key", keyFile, "--quiet", "posix", s.Dir)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		err = s.wait(addr, exited)
		if err == nil {
			s.kill = func() { cmd.Process.Kill(); <-exited }
			return s
		}
		if attempt == StartAttempts {
			t.Fatal(err)
		}
		t.Logf("versitygw on %s: %v; retrying on another port", addr, err)
	}
}

// StartAttempts bounds the ports Start tries.
const StartAttempts = 3

// wait polls until the gateway answers HTTPS or exits.
func (s *Server) wait(addr string, exited <-chan struct{}) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12}}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(StartTimeout)
	for {
		resp, err := c.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not answer on %s within %v: %w", addr, StartTimeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited before answering on %s", addr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill stops the gateway at once (an outage).
func (s *Server) Kill() { s.kill() }

// Client returns a minio client with the root credentials (for setting up
// buckets and looking behind the store's back).
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12}
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "https://"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: true, Transport: tr, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Bucket creates a bucket and returns a Config for it with prefix.
func (s *Server) Bucket(t testing.TB, bucket, prefix string) s3store.Config {
	t.Helper()
	if err := s.Client(t).MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("failed to create bucket %s: %v", bucket, err)
	}
	return s.Config(bucket, prefix)
}

// Config returns a Config for an existing bucket.
func (s *Server) Config(bucket, prefix string) s3store.Config {
	return s3store.Config{Endpoint: s.Endpoint, Bucket: bucket, Prefix: prefix,
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, Region: "us-east-1", RootCAs: s.RootCAs}
}

// CertFile is written by Start beside the gateway's root: the PEM
// certificate clients trust (for a --s3-ca flag).
func (s *Server) CertFile() string { return filepath.Join(filepath.Dir(s.Dir), "cert.pem") }

func writeCert(certFile, keyFile string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "s3test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
