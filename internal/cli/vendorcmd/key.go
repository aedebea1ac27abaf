package vendorcmd

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/pkcs11"
)

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "key gen",
			Summary: "generate a signing key pair (PKCS#8 PEM, 0600)",
			Usage: `Usage: airlock key gen --type TYPE --out PATH [--passphrase-file FILE] [--env ENV [--keyring FILE]]
       airlock key gen --type TYPE --pkcs11 URI [--env ENV [--keyring FILE]]

Generates a private signing key and writes it to PATH (PKCS#8 PEM, created
with mode 0600, never overwriting an existing file) and its public key to
PATH.pub. A missing parent directory of PATH is created with mode 0700; an
existing one is left as it is. With --passphrase-file the private key is encrypted (PBES2:
PBKDF2-HMAC-SHA256 + AES-256-CBC, readable by OpenSSL).

With --pkcs11 the key pair is generated inside the HSM token the RFC 7512
URI names (token=..., object=LABEL and/or id=..., module-path=...), as a
non-extractable, sensitive signing key; it refuses to reuse a label or id.
The token's user PIN comes from pin-source=file:PATH or pin-source=env:NAME
in the URI, or from $AIRLOCK_HSM_PIN; never put a PIN on the command line.
Anywhere a command takes a key file, a pkcs11: URI works too.

Flags:
  --type TYPE              ed25519 (default), ecdsa-p256, ecdsa-p384, rsa-3072
  --out PATH               private key file to create (PATH.pub gets the public key)
  --passphrase-file FILE   encrypt with the passphrase in FILE (first line)
  --pkcs11 URI             generate inside this PKCS#11 token instead (needs a cgo build)
  --env ENV                register the key for one trust environment (dev, staging, prod):
                           repositories of another environment then refuse it
  --keyring FILE           the key environment registry (default $AIRLOCK_KEYRING or
                           ~/.config/airlock/keyring.json)

The key ID printed on stdout is the TUF key ID of the public key.

Examples:
  airlock key gen --type ed25519 --out ~/keys/root-1.pem
  airlock key gen --type ecdsa-p256 \
    --pkcs11 'pkcs11:token=root-1;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/airlock/root-1.pin'
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				typ := fs.String("type", "ed25519", "")
				out := fs.String("out", "", "")
				passFile := fs.String("passphrase-file", "", "")
				hsm := fs.String("pkcs11", "", "")
				env := fs.String("env", "", "")
				keyring := fs.String("keyring", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *hsm != "" && (*out != "" || *passFile != "") {
						return cli.Usagef("--pkcs11 cannot be combined with --out or --passphrase-file")
					}
					if *out == "" && *hsm == "" {
						return cli.Usagef("--out is required (or --pkcs11 URI)")
					}
					t, err := keys.ParseType(*typ)
					if err != nil {
						return &cli.UsageError{Msg: err.Error()}
					}
					var kr *keys.Keyring
					if *env != "" {
						if err := keys.CheckEnvironment(*env); err != nil {
							return &cli.UsageError{Msg: err.Error()}
						}
						if kr, err = keyringFor(e, *keyring); err != nil {
							return err
						}
					} else if *keyring != "" {
						return cli.Usagef("--keyring needs --env")
					}
					registerKey := func(pub crypto.PublicKey, label string) error {
						if kr == nil {
							return nil
						}
						return kr.RegisterKeys(*env, label, pub)
					}
					if *hsm != "" {
						if _, err := pkcs11.ParseURI(*hsm); err != nil {
							return &cli.UsageError{Msg: err.Error()}
						}
						pub, err := pkcs11.Generate(*hsm, t)
						if err != nil {
							return err
						}
						id, err := keys.KeyID(pub)
						if err != nil {
							return err
						}
						if err := registerKey(pub, *hsm); err != nil {
							return err
						}
						fmt.Fprintln(e.Stdout, id)
						e.Printf("airlock: generated %s key inside the PKCS#11 token (non-extractable); export its public key with: airlock key pub --pkcs11 URI\n", t)
						return nil
					}
					var pass []byte
					if *passFile != "" {
						if pass, err = keys.ReadPassphrase(*passFile); err != nil {
							return err
						}
					}
					priv, err := keys.Generate(t)
					if err != nil {
						return err
					}
					if err := makeKeyDir(e, *out); err != nil {
						return err
					}
					if err := keys.WritePrivate(*out, priv, pass); err != nil {
						return err
					}
					id, err := keys.KeyID(priv.Public())
					if err != nil {
						return err
					}
					if err := registerKey(priv.Public(), *out); err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, id)
					e.Printf("airlock: wrote %s key %s (private, 0600) and %s.pub\n", t, *out, *out)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "key pub",
			Summary: "print a key's public key (PEM) and TUF key ID",
			Usage: `Usage: airlock key pub --key PATH [--passphrase-file FILE]
       airlock key pub --pkcs11 URI

Prints the public key of a private or public key file, or of a key pair in a
PKCS#11 token, as PEM on stdout and its TUF key ID and type on stderr.

Flags:
  --key PATH               private key (PKCS#8 PEM) or public key (.pub) file
  --passphrase-file FILE   passphrase of an encrypted private key
  --pkcs11 URI             the key pair this pkcs11: URI names (reads the public key object)

Example:
  airlock key pub --pkcs11 'pkcs11:token=root-1;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so' > root-1.pub
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				key := fs.String("key", "", "")
				passFile := fs.String("passphrase-file", "", "")
				hsm := fs.String("pkcs11", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *hsm != "" && (*key != "" || *passFile != "") {
						return cli.Usagef("--pkcs11 cannot be combined with --key or --passphrase-file")
					}
					if *hsm != "" {
						if _, err := pkcs11.ParseURI(*hsm); err != nil {
							return &cli.UsageError{Msg: err.Error()}
						}
						*key = *hsm
					}
					if *key == "" {
						return cli.Usagef("--key is required (or --pkcs11 URI)")
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

// loadSigner opens a signing key named on the command line: a key file or
// a pkcs11: URI (keys.OpenSigner). passFile may be empty; it is read only
// if a key file is encrypted.
func loadSigner(path, passFile string) (crypto.Signer, error) {
	return keys.OpenSigner(context.Background(), path, keys.OpenOptions{Passphrase: keys.PassphraseFile(passFile)})
}

// loadSigners opens several signing keys.
func loadSigners(paths []string, passFile string) ([]crypto.Signer, error) {
	return keys.OpenSigners(context.Background(), paths, keys.OpenOptions{Passphrase: keys.PassphraseFile(passFile)})
}

// loadPublic reads a public key from a .pub file, a private key file or a
// pkcs11: URI (keys.OpenPublic).
func loadPublic(path, passFile string) (crypto.PublicKey, error) {
	return keys.OpenPublic(context.Background(), path, keys.OpenOptions{Passphrase: keys.PassphraseFile(passFile)})
}

// makeKeyDir creates the missing parent directories of a private key file
// with mode 0700 (only the owner may list or enter them), so that
// `key gen --out ~/keys/root-1.pem` works on a fresh machine. A directory
// that already exists keeps its mode: tightening or loosening someone's
// directory is not key gen's business.
func makeKeyDir(e *cli.Env, path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil // exists (or unreadable: writing the key reports the error)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create the key directory: %w", err)
	}
	e.Printf("airlock: created directory %s (0700)\n", dir)
	return nil
}
