package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
)

// Files in the identity directory.
const (
	// KeyFile is the device's private key (PKCS#8 PEM, 0600, created once
	// with O_EXCL, never sent anywhere).
	KeyFile = "device.key"
	// CertFile is the certificate the server issued at enrollment.
	CertFile = "device.crt"
	// CAChainFile is the device CA chain the server returned.
	CAChainFile = "ca-chain.pem"
	// MaxCertFileSize bounds the certificate files.
	MaxCertFileSize = 256 << 10
)

// ErrNotEnrolled means the identity directory holds no certificate yet.
var ErrNotEnrolled = errors.New("device is not enrolled")

// loadIdentity loads the enrolled identity from dir.
func loadIdentity(fsys durable.FS, dir string) (*tls.Certificate, error) {
	certPEM, err := durable.ReadFile(fsys, filepath.Join(dir, CertFile), MaxCertFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read device certificate: %w", err)
	}
	key, err := loadKey(fsys, dir)
	if err != nil {
		return nil, err
	}
	return identityOf(certPEM, key)
}

func loadKey(fsys durable.FS, dir string) (crypto.Signer, error) {
	p := filepath.Join(dir, KeyFile)
	if fi, err := fsys.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("device key %s is accessible by other users (mode %v): refusing to use it; chmod 600 it and consider re-enrolling", p, fi.Mode().Perm())
	}
	data, err := durable.ReadFile(fsys, p, keys.MaxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("failed to load device key: %w", err)
	}
	k, err := parseDeviceKey(data) // a headless device has no passphrase to give
	if err != nil {
		return nil, fmt.Errorf("failed to load device key %s: %w", p, err)
	}
	return k, nil
}

// writeKey stores a new device key: created with O_EXCL and mode 0600
// (never overwriting a key), synced, then the directory synced.
func writeKey(fsys durable.FS, dir string, k *ecdsa.PrivateKey) error {
	data, err := marshalDeviceKey(k)
	if err != nil {
		return err
	}
	if err := durable.CreateFile(fsys, filepath.Join(dir, KeyFile), data, 0o600); err != nil {
		return fmt.Errorf("failed to store the device key: %w", err)
	}
	return nil
}

// identityOf builds the TLS client certificate and checks that the leaf
// certifies key.
func identityOf(certPEM []byte, key crypto.Signer) (*tls.Certificate, error) {
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, errors.New("device certificate: trailing data that is not PEM")
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("device certificate: unexpected PEM block %q", b.Type)
		}
		chain = append(chain, b.Bytes)
	}
	if len(chain) == 0 {
		return nil, errors.New("device certificate: no CERTIFICATE block")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pk, ok := key.Public().(equaler); !ok || !pk.Equal(leaf.PublicKey) {
		return nil, errors.New("device certificate does not certify the device key")
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// enroll creates the device key if needed (0600, O_EXCL), sends a CSR with
// the enrollment token and stores the issued certificate.
func (a *Agent) enroll(ctx context.Context, api *apiClient, req deviceapi.EnrollRequest) (*tls.Certificate, *deviceapi.EnrollResponse, error) {
	dir := a.cfg.Path(a.cfg.IdentityDir)
	if a.cfg.EnrollmentTokenFile == "" {
		return nil, nil, fmt.Errorf("%w and no enrollment_token_file is configured", ErrNotEnrolled)
	}
	tok, err := readToken(a.fs, a.cfg.Path(a.cfg.EnrollmentTokenFile))
	if err != nil {
		return nil, nil, err
	}
	if err := a.fs.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("failed to create identity directory: %w", err)
	}
	key, err := loadKey(a.fs, dir)
	if errors.Is(err, fs.ErrNotExist) {
		// ecdsa directly, not keys.Generate: its switch would link RSA
		// key generation into the device binary (keys.ECDSAP256 is this).
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			return nil, nil, gerr
		}
		if err := writeKey(a.fs, dir, k); err != nil {
			return nil, nil, fmt.Errorf("failed to store device key: %w", err)
		}
		key, err = k, nil
	}
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "airlock-device", Organization: []string{req.Product}},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create CSR: %w", err)
	}
	req.Token = tok
	req.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	if err := req.Validate(); err != nil {
		return nil, nil, fmt.Errorf("refusing to send an invalid enrollment: %w", err)
	}
	var resp deviceapi.EnrollResponse
	if err := api.post(ctx, deviceapi.PathEnroll, req, http.StatusCreated, &resp); err != nil {
		return nil, nil, fmt.Errorf("enrollment failed: %w", err)
	}
	if len(resp.Certificate) > MaxCertFileSize || len(resp.CAChain) > MaxCertFileSize {
		return nil, nil, fmt.Errorf("%w: certificate larger than %d bytes", ErrResponse, MaxCertFileSize)
	}
	id, err := identityOf([]byte(resp.Certificate), key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	if _, err := pollInterval(resp.PollIntervalSeconds); err != nil {
		return nil, nil, err
	}
	if resp.CAChain != "" {
		if err := durable.WriteFile(a.fs, filepath.Join(dir, CAChainFile), []byte(resp.CAChain), 0o644); err != nil {
			return nil, nil, err
		}
	}
	// The certificate last: its presence means "enrolled".
	if err := durable.WriteFile(a.fs, filepath.Join(dir, CertFile), []byte(resp.Certificate), 0o644); err != nil {
		return nil, nil, err
	}
	return id, &resp, nil
}
