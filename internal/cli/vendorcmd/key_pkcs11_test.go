//go:build cgo

package vendorcmd

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/pkcs11/pkcs11test"
)

// hsmCLI runs the command line in-process: exit code, stdout, stderr.
func hsmCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	return run(e, args), out.String(), errb.String()
}

func hsmMust(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := hsmCLI(t, args...)
	if code != cli.ExitOK {
		t.Fatalf("airlock %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestKeyGenAndPubInHSM(t *testing.T) {
	base, mod, pin := pkcs11test.NewToken(t)
	uri := pkcs11test.URI(base, "release-1", mod, pin)
	id := strings.TrimSpace(hsmMust(t, "key", "gen", "--pkcs11", uri, "--type", "ecdsa-p256"))
	if len(id) != 64 {
		t.Fatalf("key gen printed %q, want a key ID", id)
	}
	// key pub needs no PIN: it reads the public key object.
	for _, args := range [][]string{
		{"key", "pub", "--pkcs11", pkcs11test.URI(base, "release-1", mod, "")},
		{"key", "pub", "--key", uri},
	} {
		code, pemOut, errOut := hsmCLI(t, args...)
		if code != cli.ExitOK || !strings.Contains(errOut, "keyid: "+id) || !strings.Contains(errOut, "type: ecdsa-p256") {
			t.Fatalf("%v: exit %d\n%s%s", args, code, pemOut, errOut)
		}
		pub, err := keys.ParsePublic([]byte(pemOut))
		if err != nil {
			t.Fatalf("key pub output is not a public key: %v\n%s", err, pemOut)
		}
		if got, _ := keys.KeyID(pub); got != id {
			t.Fatalf("exported key ID %s, generated %s", got, id)
		}
	}

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"label reuse", []string{"key", "gen", "--pkcs11", uri, "--type", "ed25519"}, cli.ExitFailure, "already exists"},
		{"pin on command line", []string{"key", "gen", "--pkcs11", uri + "&pin-value=" + pkcs11test.PIN}, cli.ExitUsage, "PINs never go on the command line"},
		{"pin on command line for pub", []string{"key", "pub", "--pkcs11", uri + "&pin-value=1"}, cli.ExitUsage, "PINs never go on the command line"},
		{"pkcs11 with out", []string{"key", "gen", "--pkcs11", uri, "--out", filepath.Join(t.TempDir(), "k.pem")}, cli.ExitUsage, "cannot be combined"},
		{"pkcs11 with key", []string{"key", "pub", "--pkcs11", uri, "--key", "x.pem"}, cli.ExitUsage, "cannot be combined"},
		{"malformed URI", []string{"key", "gen", "--pkcs11", "pkcs11:object=a b"}, cli.ExitUsage, "must be percent-encoded"},
		{"missing object", []string{"key", "pub", "--pkcs11", pkcs11test.URI(base, "nope", mod, pin)}, cli.ExitFailure, "no pkcs11 key object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := hsmCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) {
				t.Fatalf("exit %d, want %d with %q\n%s%s", code, tt.code, tt.msg, out, errOut)
			}
		})
	}
}

// TestRepositoryWithHSMKeys creates a repository whose every key lives in
// an HSM token (SoftHSM2): a 2-of-2 root on two tokens, targets and the
// product role on an offline signing token, snapshot and timestamp on a
// server token. It publishes a signed release, rotates the root to a key on
// a third token, and verifies the release the way a device does, from the
// factory root (1.root.json) through the rotation.
func TestRepositoryWithHSMKeys(t *testing.T) {
	type token struct{ base, pin string }
	var mod string
	newToken := func() token {
		b, m, p := pkcs11test.NewToken(t)
		mod = m
		return token{b, p}
	}
	root1, root2, root3, offline, server := newToken(), newToken(), newToken(), newToken(), newToken()
	key := func(tk token, label string) string { return pkcs11test.URI(tk.base, label, mod, tk.pin) }
	keyURIs := map[string]string{
		"root1":     key(root1, "root-1"),
		"root2":     key(root2, "root-2"),
		"root3":     key(root3, "root-3"),
		"targets":   key(offline, "targets"),
		"product":   key(offline, "acme-router-x1"),
		"snapshot":  key(server, "snapshot"),
		"timestamp": key(server, "timestamp"),
	}
	types := map[string]string{
		"root1": "ed25519", "root2": "ecdsa-p384", "root3": "rsa-3072", "targets": "ecdsa-p256",
		"product": "ed25519", "snapshot": "ecdsa-p256", "timestamp": "ed25519",
	}
	ids := map[string]string{}
	for name, uri := range keyURIs {
		ids[name] = strings.TrimSpace(hsmMust(t, "key", "gen", "--pkcs11", uri, "--type", types[name]))
	}
	k := keyURIs

	dir := filepath.Join(t.TempDir(), "repo")
	hsmMust(t, "repo", "init", "--dir", dir, "--root-key", k["root1"], "--root-key", k["root2"], "--root-threshold", "2",
		"--targets-key", k["targets"], "--online-snapshot-key", k["snapshot"], "--online-timestamp-key", k["timestamp"])
	hsmMust(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", k["product"], "--threshold", "1",
		"--targets-key", k["targets"])
	hsmMust(t, "repo", "publish", "--dir", dir)

	img := filepath.Join(t.TempDir(), "firmware.img")
	if err := os.WriteFile(img, bytes.Repeat([]byte("firmware"), 20_000), 0o644); err != nil {
		t.Fatal(err)
	}
	hsmMust(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.0.0",
		"--security-version", "1", "--model", "x1", "--compress", "zstd", "--key", k["product"])
	if out := hsmMust(t, "repo", "publish", "--dir", dir); !strings.Contains(out, "acme/router-x1/1.0.0/") {
		t.Fatalf("publish printed %q", out)
	}

	factoryRoot := filepath.Join(t.TempDir(), "1.root.json")
	data, err := os.ReadFile(filepath.Join(dir, "public", "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(factoryRoot, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, id := range ids {
		if name != "root3" && name != "product" && !bytes.Contains(data, []byte(id)) {
			t.Errorf("root v1 does not list the %s HSM key %s", name, id)
		}
	}
	hsmMust(t, "verify", "--root", factoryRoot, "--repo", dir, "--product", "acme/router-x1", "--model", "x1")

	// Rotate the root: retire root-1, add root-3; both old keys and a
	// threshold of the new set sign.
	hsmMust(t, "repo", "rotate", "--dir", dir, "--role", "root", "--add", k["root3"], "--remove", ids["root1"],
		"--old-key", k["root1"], "--old-key", k["root2"], "--new-key", k["root2"], "--new-key", k["root3"])
	hsmMust(t, "repo", "publish", "--dir", dir)
	root2JSON, err := os.ReadFile(filepath.Join(dir, "public", "metadata", "2.root.json"))
	if err != nil {
		t.Fatalf("root rotation was not published: %v", err)
	}
	if !bytes.Contains(root2JSON, []byte(ids["root3"])) {
		t.Error("root v2 does not list the new root key")
	}

	// A second release after the rotation, then the device's checks from
	// the factory root: online repository and offline bundle.
	hsmMust(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", "1.1.0",
		"--security-version", "1", "--model", "x1", "--key", k["product"], "--copy")
	hsmMust(t, "repo", "publish", "--dir", dir)
	out := hsmMust(t, "verify", "--root", factoryRoot, "--repo", dir, "--product", "acme/router-x1", "--model", "x1", "--json")
	if !strings.Contains(out, "1.1.0") {
		t.Fatalf("verify did not select 1.1.0:\n%s", out)
	}
	t.Logf("device verification report:\n%s", out)
	bundlePath := filepath.Join(t.TempDir(), "fw.airlock")
	hsmMust(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--out", bundlePath)
	hsmMust(t, "verify", "--root", factoryRoot, "--bundle", bundlePath, "--model", "x1")

	// A tampered payload fails the device's checks (so the verifications
	// above can fail).
	var payload string
	filepath.WalkDir(filepath.Join(dir, "public", "targets"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, "firmware.img") && strings.Contains(p, "1.1.0") {
			payload = p
		}
		return nil
	})
	if payload == "" {
		t.Fatal("published payload not found")
	}
	if err := os.Chmod(payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(payload, bytes.Repeat([]byte("evilware"), 20_000), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := hsmCLI(t, "verify", "--root", factoryRoot, "--repo", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--model", "x1"); code != cli.ExitFailure {
		t.Fatalf("tampered payload verified: exit %d %s", code, errOut)
	}

	// No PIN was written anywhere in the repository.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(pkcs11test.PIN)) {
			t.Errorf("%s contains the HSM PIN", p)
		}
		return nil
	})
}
