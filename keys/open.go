package keys

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/airlockfw/airlock/internal/durable"
)

// A key reference names a signing key the way a user writes it: the path of
// a key file (PKCS#8 PEM, possibly encrypted, or a .pub public key file) or
// a URI whose scheme names a backend, such as an RFC 7512 pkcs11: URI for a
// key in an HSM token. Backends register themselves (package keys/pkcs11
// registers "pkcs11" when it is imported), so this package carries no
// backend code and a binary carries only the backends it imports.

// Backend opens the keys of one URI scheme.
type Backend struct {
	// Signer opens the private key the reference names.
	Signer func(ctx context.Context, ref string) (crypto.Signer, error)
	// Public reads the public key the reference names, without needing
	// access to the private key (no PIN).
	Public func(ctx context.Context, ref string) (crypto.PublicKey, error)
}

var (
	backendsMu sync.RWMutex
	backends   = map[string]Backend{}
)

// ErrNoBackend is returned for a reference whose scheme has no registered
// backend in this binary.
var ErrNoBackend = errors.New("no key backend for this URI scheme in this binary")

// RegisterBackend makes OpenSigner and OpenPublic dispatch references
// "scheme:…" to b. It is called from the init function of a backend
// package; registering a scheme twice panics.
func RegisterBackend(scheme string, b Backend) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if _, dup := backends[scheme]; dup || scheme == "" || b.Signer == nil || b.Public == nil {
		panic("internal error: bad or duplicate key backend " + scheme)
	}
	backends[scheme] = b
}

// Backends returns the registered schemes, sorted.
func Backends() []string {
	backendsMu.RLock()
	defer backendsMu.RUnlock()
	var s []string
	for k := range backends {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// knownSchemes are the schemes Airlock has backends for; a reference with
// one of them never falls back to a file path, even when its backend is not
// linked into this binary.
var knownSchemes = []string{"pkcs11"}

// backendFor returns the backend of ref, ok=false if ref is a file path.
func backendFor(ref string) (b Backend, ok bool, err error) {
	scheme, _, found := strings.Cut(ref, ":")
	if !found {
		return Backend{}, false, nil
	}
	backendsMu.RLock()
	b, ok = backends[scheme]
	backendsMu.RUnlock()
	if ok {
		return b, true, nil
	}
	for _, k := range knownSchemes {
		if k == scheme {
			return Backend{}, true, fmt.Errorf("%w: %s: (registered: %q)", ErrNoBackend, scheme, Backends())
		}
	}
	return Backend{}, false, nil
}

// IsURI reports whether ref names a key through a backend URI (a known or
// registered scheme) rather than a file.
func IsURI(ref string) bool {
	_, ok, _ := backendFor(ref)
	return ok
}

// OpenOptions configures OpenSigner and OpenPublic. The zero value opens
// unencrypted key files and backend keys.
type OpenOptions struct {
	// Passphrase returns the passphrase of an encrypted key file; it is
	// called only for an encrypted file, never for a backend key (a
	// backend URI names its own PIN source). Nil refuses encrypted files
	// with an error saying a passphrase is needed. See PassphraseFile.
	Passphrase func() ([]byte, error)
}

// OpenSigner opens the signing key ref names: a private key file, or a URI
// dispatched to its registered Backend.
func OpenSigner(ctx context.Context, ref string, opts OpenOptions) (crypto.Signer, error) {
	if ref == "" {
		return nil, errors.New("no key given")
	}
	b, ok, err := backendFor(ref)
	if err != nil {
		return nil, err
	}
	if ok {
		s, err := b.Signer(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("failed to open HSM key: %w", err)
		}
		return s, nil
	}
	pass := opts.Passphrase
	if pass == nil {
		pass = func() ([]byte, error) { return nil, errors.New("key is encrypted: give --passphrase-file") }
	}
	return LoadPrivate(ref, pass)
}

// OpenSigners opens several signing keys.
func OpenSigners(ctx context.Context, refs []string, opts OpenOptions) ([]crypto.Signer, error) {
	var out []crypto.Signer
	for _, r := range refs {
		s, err := OpenSigner(ctx, r, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// OpenPublic reads the public key ref names: a public key file, a private
// key file (its public half), or a backend URI (the token's public key
// object, no PIN needed).
func OpenPublic(ctx context.Context, ref string, opts OpenOptions) (crypto.PublicKey, error) {
	b, ok, err := backendFor(ref)
	if err != nil {
		return nil, err
	}
	if ok {
		pub, err := b.Public(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("failed to read HSM public key: %w", err)
		}
		return pub, nil
	}
	pub, err := LoadPublic(ref)
	if err == nil {
		return pub, nil
	}
	s, err2 := OpenSigner(ctx, ref, opts)
	if err2 != nil {
		return nil, err
	}
	return s.Public(), nil
}

// IsPrivate reports whether ref names a private key (a backend URI, or a
// file whose first bytes hold a PEM private key block) rather than a public
// key file. An unreadable file counts as private, so that OpenSigner
// reports why it cannot be read.
func IsPrivate(ref string) bool {
	if IsURI(ref) {
		return true
	}
	f, err := os.Open(ref)
	if err != nil {
		return true
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	return bytes.Contains(head[:n], []byte("PRIVATE KEY-----"))
}

// MaxPassphraseFileSize bounds a passphrase file.
const MaxPassphraseFileSize = 4096

// PassphraseFile returns a passphrase function (OpenOptions.Passphrase)
// reading the first line of path, or nil if path is "".
func PassphraseFile(path string) func() ([]byte, error) {
	if path == "" {
		return nil
	}
	return func() ([]byte, error) { return ReadPassphrase(path) }
}

// ReadPassphrase reads the first line of a passphrase file (at most
// MaxPassphraseFileSize bytes).
func ReadPassphrase(path string) ([]byte, error) {
	data, err := durable.ReadFile(durable.OS, path, MaxPassphraseFileSize)
	if errors.Is(err, durable.ErrTooLarge) {
		return nil, fmt.Errorf("passphrase file is larger than %d bytes (MaxPassphraseFileSize)", MaxPassphraseFileSize)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read passphrase file: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, errors.New("passphrase file is empty")
	}
	return line, nil
}
