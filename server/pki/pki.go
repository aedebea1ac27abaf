// Package pki is the update server's certificate authority work: the TLS
// CA and the server certificate it issues itself, the device CA that issues
// each enrolled device its client certificate, operator-supplied
// manufacturing CAs, and the strict parsing of enrollment CSRs.
//
// # Threat model
//
// Trusted: the operator and the DATA directory. The CA private keys are the
// secrets here: they are ECDSA P-256 keys created with O_EXCL and mode 0600,
// stored sealed with the server's key-encryption key (a [Sealer], the KEK of
// server/auth, which lives outside DATA's database), and a key file that
// group or others can read is refused. A copy of DATA without the KEK does
// not reveal them. Rotation: a server certificate is reissued
// ServerCertRenewBefore its expiry or when the host names change; the CAs
// live CAValidity and are replaced by hand (devices pin the TLS CA by
// fingerprint).
//
// Untrusted: every CSR (from the network, at enrollment) and every
// certificate file an operator points at. A CSR is one PEM block of at most
// MaxCSRSize bytes, P-256 or Ed25519 only, with a valid self-signature;
// the certificate issued for it carries the device ID the server chose,
// never the CSR's subject. A CA file holds only CERTIFICATE blocks, at most
// MaxCACerts. The PKI is not part of the firmware trust chain: it decides
// who may talk to the server, not what a device installs.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
)

// Files in the DATA directory.
const (
	CAFile              = "ca.pem"               // server TLS CA certificate (devices pin it)
	CAKeyFile           = "ca.key"               // server TLS CA private key (0600)
	ServerCertFile      = "server.pem"           // server certificate issued by CAFile
	ServerKeyFile       = "server.key"           // server private key (0600)
	DeviceCAFile        = "device-ca.pem"        // device CA certificate (issues client certs)
	DeviceCAKeyFile     = "device-ca.key"        // device CA private key (0600)
	ManufacturingCAFile = "manufacturing-ca.pem" // optional factory CA trusted for enrollment
)

// Certificate lifetimes and size limits.
const (
	// CAValidity is the lifetime of the CAs the server creates.
	CAValidity = 10 * 365 * 24 * time.Hour
	// ServerCertValidity is the lifetime of a server certificate the server
	// issues itself.
	ServerCertValidity = 365 * 24 * time.Hour
	// ServerCertRenewBefore: a self-issued server certificate closer than this
	// to expiry is replaced (at startup and by the periodic check).
	ServerCertRenewBefore = 30 * 24 * time.Hour
	// DeviceCertValidity is the lifetime of an issued device certificate.
	DeviceCertValidity = 365 * 24 * time.Hour
	// CertBackdate is subtracted from NotBefore to tolerate clock skew.
	CertBackdate = 5 * time.Minute
	// MaxPEMFileSize bounds certificate and key files read from DATA and
	// operator-provided files.
	MaxPEMFileSize = 1 << 20
	// MaxCSRSize bounds the PEM-encoded certificate request in an enrollment.
	MaxCSRSize = deviceapi.MaxCSRSize
	// MaxCACerts bounds the number of certificates in a manufacturing CA file.
	MaxCACerts = 64
)

// Errors of the PKI layer.
var (
	// ErrBadCSR: an enrollment's certificate request failed a check.
	ErrBadCSR = errors.New("invalid certificate request")
	// ErrInsecureKeyFile: a private key file in DATA is readable by group or others.
	ErrInsecureKeyFile = errors.New("private key file is readable by group or others")
	// ErrBadCAFile: a CA certificate file failed a check.
	ErrBadCAFile = errors.New("invalid CA certificate file")
)

// Sealer seals CA keys at rest: the server's key-encryption key
// (auth.KEK). Purpose and record ID are authenticated with the data.
type Sealer interface {
	Seal(purpose, recordID string, plaintext []byte) ([]byte, error)
	Open(purpose, recordID string, sealed []byte) ([]byte, error)
}

// CA is a certificate authority with its signing key.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte // Cert, PEM-encoded
	key  crypto.Signer
}

// Fingerprint returns the lowercase hex SHA-256 of a certificate's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreateCA loads the CA in dir, creating the key and/or certificate if
// absent. Crash safety: the key is written first (O_EXCL, fsync); a key
// without a certificate gets a new self-signed certificate.
func LoadOrCreateCA(dir, certName, keyName, cn string, kek Sealer) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	keyPath := filepath.Join(dir, keyName)
	key, err := LoadCAKey(keyPath, kek)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createCAKey(keyPath, kek)
		if errors.Is(err, fs.ErrExist) { // lost a race with another process
			key, err = LoadCAKey(keyPath, kek)
		}
	}
	if err != nil {
		return nil, err
	}
	certPath := filepath.Join(dir, certName)
	certs, pemData, err := ReadCertFile(certPath)
	if err == nil {
		if len(certs) != 1 {
			return nil, fmt.Errorf("%w: %s holds %d certificates, want 1", ErrBadCAFile, certPath, len(certs))
		}
		c := certs[0]
		if !c.IsCA || !publicKeysEqual(c.PublicKey, key.Public()) {
			return nil, fmt.Errorf("%w: %s is not a CA certificate for %s", ErrBadCAFile, certPath, keyPath)
		}
		return &CA{Cert: c, key: key, PEM: pemData}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Airlock"}},
		NotBefore:             now.Add(-CertBackdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("failed to create CA certificate: %w", err)
	}
	pemData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := durable.WriteFile(durable.OS, certPath, pemData, 0o644); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("internal error: parsing new certificate: %w", err)
	}
	return &CA{Cert: cert, key: key, PEM: pemData}, nil
}

// createKey generates an ECDSA P-256 key and writes it to path with O_EXCL,
// mode 0600.
func createKey(path string) (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	data, err := keys.MarshalPrivate(key, nil)
	if err != nil {
		return nil, err
	}
	if err := writeExclusive(path, data, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// writeExclusive creates path (O_EXCL), writes data and fsyncs file and
// directory; on failure it removes what it created.
func writeExclusive(path string, data []byte, perm fs.FileMode) error {
	return durable.CreateFile(durable.OS, path, data, perm)
}

// loadKey reads an unencrypted PKCS#8 key, refusing a file readable by
// group or others.
func loadKey(path string) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := keys.ParsePrivate(data, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s: %w", path, err)
	}
	return k, nil
}

func readLimited(path string) ([]byte, error) {
	return durable.ReadFile(durable.OS, path, MaxPEMFileSize)
}

// readKeyFile reads a private key file (at most MaxPEMFileSize bytes),
// refusing one readable by group or others.
func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v (chmod 600 it)", ErrInsecureKeyFile, path, fi.Mode().Perm())
	}
	return readLimited(path)
}

// ReadCertFile reads one or more PEM CERTIFICATE blocks; anything else in
// the file is an error.
func ReadCertFile(path string) ([]*x509.Certificate, []byte, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, nil, err
	}
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrBadCAFile, path, err)
	}
	return certs, data, nil
}

func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		if len(certs) == MaxCACerts {
			return nil, fmt.Errorf("more than %d certificates (MaxCACerts)", MaxCACerts)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the last PEM block")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("failed to generate serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialHex is the store's form of a certificate serial: lowercase hex.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// ServerNames returns the names a self-issued server certificate covers.
func ServerNames(hostnames []string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range hostnames {
		dup := false
		for _, n := range names {
			dup = dup || n == h
		}
		if !dup {
			names = append(names, h)
		}
	}
	return names
}

// LoadOrIssueServerCert returns the server certificate in dir if it is
// issued by the CA, covers every name and is not about to expire; otherwise
// it issues a new key and certificate (written to temp files, then renamed;
// a crash in between leaves a mismatched pair that the next call replaces).
func LoadOrIssueServerCert(dir string, c *CA, names []string, now time.Time) (*tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile)
	if cert, err := LoadKeyPair(certPath, keyPath); err == nil {
		leaf := cert.Leaf
		ok := leaf.CheckSignatureFrom(c.Cert) == nil && now.Add(ServerCertRenewBefore).Before(leaf.NotAfter)
		for _, n := range names {
			ok = ok && leaf.VerifyHostname(n) == nil
		}
		if ok {
			return cert, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errKeyPairMismatch) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[len(names)-1], Organization: []string{"Airlock"}},
		NotBefore:    now.Add(-CertBackdate),
		NotAfter:     now.Add(ServerCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("failed to issue server certificate: %w", err)
	}
	keyPEM, err := keys.MarshalPrivate(key, nil)
	if err != nil {
		return nil, err
	}
	tmpKey := keyPath + ".new"
	os.Remove(tmpKey) // left by a crash; never a live key
	if err := writeExclusive(tmpKey, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmpKey, keyPath); err != nil {
		return nil, fmt.Errorf("failed to install server key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := durable.WriteFile(durable.OS, certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return LoadKeyPair(certPath, keyPath)
}

var errKeyPairMismatch = errors.New("certificate and key do not match")

// LoadKeyPair loads a PEM certificate (chain) and key for TLS.
func LoadKeyPair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := readLimited(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readLimited(keyPath)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %s, %s: %w", errKeyPairMismatch, certPath, keyPath, err)
	}
	return &cert, nil // Leaf is populated by X509KeyPair
}

// ParseCSR parses and checks a device's PEM PKCS#10 certificate request: one
// "CERTIFICATE REQUEST" block of at most MaxCSRSize bytes and nothing else, a
// valid self-signature, and an ECDSA P-256 or Ed25519 public key. Errors
// wrap ErrBadCSR.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds limit %d (MaxCSRSize)", ErrBadCSR, len(data), MaxCSRSize)
	}
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadCSR)
	}
	if b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block type %q, want \"CERTIFICATE REQUEST\"", ErrBadCSR, b.Type)
	}
	if len(b.Headers) != 0 {
		return nil, fmt.Errorf("%w: PEM headers are not allowed", ErrBadCSR)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify (the requester does not hold the key): %w", ErrBadCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA curve %s, want P-256", ErrBadCSR, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: key type %T, want ECDSA P-256 or Ed25519", ErrBadCSR, csr.PublicKey)
	}
	return csr, nil
}

// IssueDeviceCert issues a client certificate for deviceID to pub: CN is the
// device ID (whatever the CSR's subject said), ExtKeyUsage ClientAuth,
// DeviceCertValidity, random 128-bit serial.
func IssueDeviceCert(c *CA, deviceID string, pub crypto.PublicKey, now time.Time) (*x509.Certificate, []byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: deviceID},
		NotBefore:             now.Add(-CertBackdate),
		NotAfter:              now.Add(DeviceCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, pub, c.key)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to issue device certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("internal error: parsing issued certificate: %w", err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// caKeyPurpose binds sealed CA keys to their use (KEK additional data).
const caKeyPurpose = "ca-key"

// createCAKey generates an ECDSA P-256 CA key and writes it sealed with the
// KEK (O_EXCL, mode 0600): a copy of the data directory without the KEK
// does not reveal the keys that sign server and device certificates.
func createCAKey(path string, kek Sealer) (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	data, err := keys.MarshalPrivate(key, nil)
	if err != nil {
		return nil, err
	}
	sealed, err := kek.Seal(caKeyPurpose, filepath.Base(path), data)
	clear(data)
	if err != nil {
		return nil, err
	}
	if err := writeExclusive(path, sealed, 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// LoadCAKey reads a CA key sealed with the KEK. A plain PKCS#8 key (written
// by an earlier version) is accepted once and re-written sealed.
func LoadCAKey(path string, kek Sealer) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(data, []byte("-----BEGIN")) {
		k, err := keys.ParsePrivate(data, nil)
		if err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", path, err)
		}
		sealed, err := kek.Seal(caKeyPurpose, filepath.Base(path), data)
		if err != nil {
			return nil, err
		}
		if err := durable.WriteFile(durable.OS, path, sealed, 0o600); err != nil {
			return nil, fmt.Errorf("failed to seal %s with the KEK: %w", path, err)
		}
		return k, nil
	}
	pemKey, err := kek.Open(caKeyPurpose, filepath.Base(path), data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer clear(pemKey)
	k, err := keys.ParsePrivate(pemKey, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s: %w", path, err)
	}
	return k, nil
}
