// Package pkcs11test creates throwaway SoftHSM2 tokens for tests of code
// that signs with HSM keys (package keys/pkcs11 and its users).
//
// Threat model: none; test-only. Tokens, PINs and keys created here are
// disposable and live in t.TempDir().
//
// Each test gets its own SoftHSM2 configuration and token directory
// (SOFTHSM2_CONF, set with t.Setenv, so such tests cannot be parallel);
// several NewToken calls in one test create several tokens in the same
// directory. At the end of the test the PKCS#11 modules this process loaded
// are closed (pkcs11.Close), so that the next test's module initialization
// reads its own configuration.
//
// When softhsm2 is not installed the test is skipped, unless the
// environment variable AIRLOCK_REQUIRE_TOOLS is set, in which case it
// fails. Install with: apt-get install -y softhsm2.
package pkcs11test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/airlockfw/airlock/keys/pkcs11"
)

// PIN and SOPIN are the user and security officer PINs of every test token.
const (
	PIN   = "87654321"
	SOPIN = "12345678"
)

// ModulePaths are where Debian and Ubuntu install the SoftHSM2 module.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

var (
	mu    sync.Mutex
	confs = map[string]bool{} // SoftHSM2 configurations of running tests
	count int
)

// Module returns the SoftHSM2 module path and the softhsm2-util path, or
// skips (fails, with AIRLOCK_REQUIRE_TOOLS set) when SoftHSM2 is missing.
func Module(t testing.TB) (module, util string) {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		msg := fmt.Sprintf("SoftHSM2 is not installed (%s); apt-get install -y softhsm2", what)
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		missing("no softhsm2-util")
	}
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, util
		}
	}
	missing("no libsofthsm2.so")
	return "", ""
}

// NewToken initializes a fresh SoftHSM2 token and returns a base URI naming
// it ("pkcs11:token=LABEL"), the module path, and a PIN file (mode 0600)
// holding its user PIN. Use URI to name a key on it.
func NewToken(t testing.TB) (base, module, pinFile string) {
	t.Helper()
	module, util := Module(t)

	mu.Lock()
	count++
	label := fmt.Sprintf("airlock-test-%d", count)
	conf := os.Getenv("SOFTHSM2_CONF")
	live := confs[conf]
	mu.Unlock()

	if !live {
		// A new SoftHSM2 directory for this test (and its subtests, which
		// inherit the environment).
		dir := t.TempDir()
		conf = filepath.Join(dir, "softhsm2.conf")
		tokens := filepath.Join(dir, "tokens")
		if err := os.Mkdir(tokens, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		// Cleanups run last-in first-out: the environment is restored, then
		// the modules are closed, then the directory is removed.
		t.Cleanup(func() {
			if err := pkcs11.Close(); err != nil {
				t.Errorf("pkcs11.Close: %v", err)
			}
			mu.Lock()
			delete(confs, conf)
			mu.Unlock()
		})
		// A module loaded under an earlier configuration would not see
		// this directory.
		if err := pkcs11.Close(); err != nil {
			t.Fatalf("pkcs11.Close: %v", err)
		}
		t.Setenv("SOFTHSM2_CONF", conf)
		mu.Lock()
		confs[conf] = true
		mu.Unlock()
	}
	dir := filepath.Dir(conf)
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile = filepath.Join(dir, label+".pin")
	if err := os.WriteFile(pinFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "pkcs11:token=" + label, module, pinFile
}

// URI returns base (from NewToken) extended with the key label object and
// the module-path and pin-source=file: query attributes, percent-encoded
// as RFC 7512 requires.
func URI(base, object, module, pinFile string) string {
	u, err := pkcs11.ParseURI(base)
	if err != nil {
		panic("pkcs11test: bad base URI: " + err.Error())
	}
	u.Object = object
	u.ModulePath = module
	if pinFile != "" {
		u.PINSource = "file:" + pinFile
	}
	return u.String()
}
