package server

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/pki"
)

// DBFile is the default SQLite database in the DATA directory.
const DBFile = "airlock.db"

// Files in the DATA directory (see package server/pki).
const (
	CAFile              = pki.CAFile
	CAKeyFile           = pki.CAKeyFile
	DeviceCAFile        = pki.DeviceCAFile
	DeviceCAKeyFile     = pki.DeviceCAKeyFile
	ManufacturingCAFile = pki.ManufacturingCAFile
)

// Certificate lifetimes and size limits (see package server/pki).
const (
	ServerCertRenewBefore = pki.ServerCertRenewBefore
	DeviceCertValidity    = pki.DeviceCertValidity
	MaxCSRSize            = pki.MaxCSRSize
)

// Errors of the PKI layer.
var (
	ErrBadCSR          = pki.ErrBadCSR
	ErrInsecureKeyFile = pki.ErrInsecureKeyFile
	ErrBadCAFile       = pki.ErrBadCAFile
)

// Fingerprint returns the lowercase hex SHA-256 of a certificate's DER.
func Fingerprint(cert *x509.Certificate) string { return pki.Fingerprint(cert) }

// ParseCSR is [pki.ParseCSR].
func ParseCSR(data []byte) (*x509.CertificateRequest, error) { return pki.ParseCSR(data) }

// EnsureCA creates, if absent, the server's TLS CA in dataDir (ca.pem and
// ca.key, ECDSA P-256, key 0600 created with O_EXCL) and returns its PEM
// certificate and SHA-256 fingerprint (lowercase hex), which devices pin.
func EnsureCA(dataDir string) (caPEM []byte, fingerprint string, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("failed to create data directory: %w", err)
	}
	kek, _, err := auth.LoadOrCreateKEK(filepath.Join(dataDir, auth.KEKFile))
	if err != nil {
		return nil, "", err
	}
	c, err := pki.LoadOrCreateCA(dataDir, CAFile, CAKeyFile, "Airlock server CA", kek)
	if err != nil {
		return nil, "", err
	}
	return c.PEM, Fingerprint(c.Cert), nil
}
