package vendorcmd

import (
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
