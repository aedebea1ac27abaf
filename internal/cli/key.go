package cli

import (
	"bytes"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/airlockfw/airlock/keys"
)

func init() {
	register(
		&command{
			Name:    "key gen",
			Summary: "generate a signing key pair (PKCS#8 PEM, 0600)",
			Usage: `Usage: airlock key gen --type TYPE --out PATH [--passphrase-file FILE]

Generates a private signing key and writes it to PATH (PKCS#8 PEM, created
with mode 0600, never overwriting an existing file) and its public key to
PATH.pub. With --passphrase-file the private key is encrypted (PBES2:
PBKDF2-HMAC-SHA256 + AES-256-CBC, readable by OpenSSL).

Flags:
  --type TYPE              ed25519 (default), ecdsa-p256, ecdsa-p384, rsa-3072
  --out PATH               private key file to create (PATH.pub gets the public key)
  --passphrase-file FILE   encrypt with the passphrase in FILE (first line)

The key ID printed on stdout is the TUF key ID of the public key.

Example:
  airlock key gen --type ed25519 --out ~/keys/root-1.pem
`,
			Flags: func(fs *flag.FlagSet) func(*Env, []string) error {
				typ := fs.String("type", "ed25519", "")
				out := fs.String("out", "", "")
				passFile := fs.String("passphrase-file", "", "")
				return func(e *Env, args []string) error {
					if len(args) != 0 {
						return usagef("unexpected arguments %q", args)
					}
					if *out == "" {
						return usagef("--out is required")
					}
					t, err := keys.ParseType(*typ)
					if err != nil {
						return &UsageError{Msg: err.Error()}
					}
					var pass []byte
					if *passFile != "" {
						if pass, err = readPassphrase(*passFile); err != nil {
							return err
						}
					}
					priv, err := keys.Generate(t)
					if err != nil {
						return err
					}
					if err := keys.WritePrivate(*out, priv, pass); err != nil {
						return err
					}
					id, err := keys.KeyID(priv.Public())
					if err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, id)
					e.Printf("airlock: wrote %s key %s (private, 0600) and %s.pub\n", t, *out, *out)
					return nil
				}
			},
		},
		&command{
			Name:    "key pub",
			Summary: "print a key's public key (PEM) and TUF key ID",
			Usage: `Usage: airlock key pub --key PATH [--passphrase-file FILE]

Prints the public key of a private or public key file as PEM on stdout and its
TUF key ID and type on stderr.

Flags:
  --key PATH               private key (PKCS#8 PEM) or public key (.pub) file
  --passphrase-file FILE   passphrase of an encrypted private key
`,
			Flags: func(fs *flag.FlagSet) func(*Env, []string) error {
				key := fs.String("key", "", "")
				passFile := fs.String("passphrase-file", "", "")
				return func(e *Env, args []string) error {
					if len(args) != 0 || *key == "" {
						return usagef("--key is required")
					}
					pub, err := loadPublic(*key, *passFile)
					if err != nil {
						return err
					}
					pemData, err := keys.MarshalPublic(pub)
					if err != nil {
						return err
					}
					id, err := keys.KeyID(pub)
					if err != nil {
						return err
					}
					t, _ := keys.TypeOf(pub)
					e.Stdout.Write(pemData)
					e.Printf("type: %s\nkeyid: %s\n", t, id)
					return nil
				}
			},
		},
	)
}

// MaxPassphraseFileSize bounds a passphrase file.
const MaxPassphraseFileSize = 4096

func readPassphrase(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read passphrase file: %w", err)
	}
	if len(data) > MaxPassphraseFileSize {
		return nil, fmt.Errorf("passphrase file is larger than %d bytes", MaxPassphraseFileSize)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, errors.New("passphrase file is empty")
	}
	return line, nil
}

// loadSigner opens a signing key named on the command line. passFile may be
// empty; it is read only if the key is encrypted.
func loadSigner(path, passFile string) (crypto.Signer, error) {
	if strings.HasPrefix(path, "pkcs11:") {
		return nil, errors.New("PKCS#11 keys are not supported by this build")
	}
	return keys.LoadPrivate(path, func() ([]byte, error) {
		if passFile == "" {
			return nil, errors.New("key is encrypted: give --passphrase-file")
		}
		return readPassphrase(passFile)
	})
}

// loadSigners opens several signing keys.
func loadSigners(paths []string, passFile string) ([]crypto.Signer, error) {
	var out []crypto.Signer
	for _, p := range paths {
		s, err := loadSigner(p, passFile)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// loadPublic reads a public key from a .pub file or a private key file.
func loadPublic(path, passFile string) (crypto.PublicKey, error) {
	pub, err := keys.LoadPublic(path)
	if err == nil {
		return pub, nil
	}
	s, err2 := loadSigner(path, passFile)
	if err2 != nil {
		return nil, err
	}
	return s.Public(), nil
}
