package vendorcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
)

func TestKeyGenAndPub(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{"ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072"} {
		path := dir + "/" + typ + ".pem"
		code, id, errOut := runCLI(t, "key", "gen", "--type", typ, "--out", path)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", typ, code, errOut)
		}
		code, pemOut, errOut := runCLI(t, "key", "pub", "--key", path+".pub")
		if code != 0 || !strings.Contains(pemOut, "PUBLIC KEY") || !strings.Contains(errOut, strings.TrimSpace(id)) {
			t.Fatalf("%s: key pub: exit %d\n%s\n%s", typ, code, pemOut, errOut)
		}
		// Refuses to overwrite.
		if code, _, errOut := runCLI(t, "key", "gen", "--type", typ, "--out", path); code != cli.ExitFailure || !strings.Contains(errOut, "refusing to overwrite") {
			t.Fatalf("%s: overwrite: exit %d: %s", typ, code, errOut)
		}
	}
}

// TestKeyGenCreatesKeyDir: `key gen --out ~/keys/x.pem` on a fresh machine
// creates ~/keys with mode 0700 (the README's first command), leaves the mode
// of an existing directory alone, and still writes the key 0600 without
// overwriting.
func TestKeyGenCreatesKeyDir(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, "keys", "sub", "root-1.pem")
	code, _, errOut := runCLI(t, "key", "gen", "--out", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, d := range []string{filepath.Join(home, "keys"), filepath.Join(home, "keys", "sub")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s: mode %o, want 700", d, got)
		}
	}
	if !strings.Contains(errOut, "created directory") {
		t.Errorf("stderr does not say the directory was created: %s", errOut)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key mode %o, want 600", got)
	}
	// O_EXCL still holds: a second run refuses to overwrite.
	if code, _, errOut := runCLI(t, "key", "gen", "--out", path); code != cli.ExitFailure || !strings.Contains(errOut, "refusing to overwrite") {
		t.Fatalf("overwrite: exit %d: %s", code, errOut)
	}

	// An existing directory keeps its mode (here a loose 0755 one).
	shared := filepath.Join(home, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "key", "gen", "--out", filepath.Join(shared, "k.pem"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if fi, err := os.Stat(shared); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("existing directory mode changed: %v %v", fi.Mode(), err)
	}
	if strings.Contains(errOut, "created directory") {
		t.Errorf("claims to have created an existing directory: %s", errOut)
	}
	if fi, err := os.Stat(filepath.Join(shared, "k.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key in existing dir: %v %v", fi.Mode(), err)
	}
}
