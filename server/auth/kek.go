package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/server/store"
)

// Key-encryption key (KEK) parameters.
const (
	// KEKFile is the default KEK file name in the data directory. Production
	// should keep the KEK elsewhere (another volume, a systemd credential,
	// an HSM-unwrapped file): see docs/security.md.
	KEKFile = "kek.key"
	// KEKSize is the size of the KEK (AES-256).
	KEKSize = 32
	// MaxKEKFileSize bounds the KEK file: 64 hex digits and a newline.
	MaxKEKFileSize = 2*KEKSize + 1
	// sealVersion is the first byte of every sealed secret.
	sealVersion = 1
	// kekCheckName names the server secret that proves the KEK matches the
	// database.
	kekCheckName = "kek-check"
)

// Errors of the KEK and of sealed secrets.
var (
	// ErrKEK: the KEK file is missing, malformed or insecure.
	ErrKEK = errors.New("key-encryption key")
	// ErrWrongKEK: the KEK is not the one this database's secrets were
	// sealed with. The server refuses to start rather than run without them.
	ErrWrongKEK = fmt.Errorf("%w does not match the database (wrong --kek-file, or the database was restored with another key)", ErrKEK)
	// ErrSealed: a sealed secret failed to open: wrong KEK, corrupted, or
	// moved to another record (the record ID is authenticated).
	ErrSealed = errors.New("sealed secret failed to open")
)

// KEK is the server's key-encryption key. Secrets that must be reversible
// (TOTP seeds) are stored in the database only sealed with it, using
// AES-256-GCM with a random 96-bit nonce and the purpose and record ID as
// additional data, so a sealed value copied to another record or purpose
// does not open. The KEK itself is never stored in the database.
type KEK struct {
	_    [0]func() // not comparable
	aead cipher.AEAD
}

// NewKEK returns a KEK for the given KEKSize bytes.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrKEK, len(key), KEKSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKEK, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKEK, err)
	}
	return &KEK{aead: aead}, nil
}

// LoadOrCreateKEK reads the KEK file at path (64 lowercase hex digits,
// optionally followed by one newline, as `openssl rand -hex 32` writes), or
// creates it with a random key (mode 0600, never overwriting) when it does
// not exist. It refuses a file that group or others may read or write.
func LoadOrCreateKEK(path string) (k *KEK, created bool, err error) {
	k, err = LoadKEK(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	key := make([]byte, KEKSize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, fmt.Errorf("failed to generate key-encryption key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("failed to create key-encryption key directory: %w", err)
	}
	// Write a temporary file, then link it into place: the KEK file appears
	// complete or not at all, and an existing one is never replaced.
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := durable.CreateFile(durable.OS, tmp, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) { // lost a race with another process
			k, err = LoadKEK(path)
			return k, false, err
		}
		return nil, false, fmt.Errorf("failed to create key-encryption key %s: %w", path, err)
	}
	if err := durable.OS.SyncDir(filepath.Dir(path)); err != nil {
		return nil, false, err
	}
	k, err = NewKEK(key)
	return k, true, err
}

// LoadKEK reads an existing KEK file (see LoadOrCreateKEK). A missing file
// is an error matching fs.ErrNotExist.
func LoadKEK(path string) (*KEK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKEK, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKEK, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKEK, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; group and others must have no access (chmod 600 it)", ErrKEK, path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxKEKFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: failed to read %s: %w", ErrKEK, path, err)
	}
	if len(data) == MaxKEKFileSize && data[len(data)-1] == '\n' {
		data = data[:len(data)-1]
	}
	if len(data) != 2*KEKSize || !isLowerHex(string(data)) {
		return nil, fmt.Errorf("%w: %s must hold exactly %d lowercase hex digits and an optional newline", ErrKEK, path, 2*KEKSize)
	}
	key, _ := hex.DecodeString(string(data))
	return NewKEK(key)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func sealAD(purpose, recordID string) []byte {
	return []byte("airlock sealed secret v1\x00" + purpose + "\x00" + recordID)
}

// Seal encrypts plaintext for one purpose (e.g. "totp") and record ID.
func (k *KEK) Seal(purpose, recordID string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("failed to generate nonce: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, sealAD(purpose, recordID)), nil
}

// Open decrypts what Seal returned for the same purpose and record ID.
func (k *KEK) Open(purpose, recordID string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: malformed (%d bytes)", ErrSealed, len(sealed))
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], sealAD(purpose, recordID))
	if err != nil {
		return nil, fmt.Errorf("%w: %s of %q: wrong key-encryption key or tampered record", ErrSealed, purpose, recordID)
	}
	return pt, nil
}

// CheckKEK verifies that k is the KEK the database's secrets are sealed
// with: the first server to start stores a value sealed with its KEK, and
// every later start (and the CLI) must open it. It fails with ErrWrongKEK.
func CheckKEK(ctx context.Context, st store.Store, k *KEK, now time.Time) error {
	const check = "airlock kek check"
	sealed, err := k.Seal(kekCheckName, kekCheckName, []byte(check))
	if err != nil {
		return err
	}
	stored, err := st.PutSecretIfAbsent(ctx, kekCheckName, sealed, now)
	if err != nil {
		return fmt.Errorf("failed to check the key-encryption key: %w", err)
	}
	pt, err := k.Open(kekCheckName, kekCheckName, stored)
	if err != nil || string(pt) != check {
		return ErrWrongKEK
	}
	return nil
}
