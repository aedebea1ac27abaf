package keys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "keyring.json")
	kr, err := OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.Register("aa", EnvDev, "dev key"); err != nil {
		t.Fatal(err)
	}
	if err := kr.Register("bb", EnvProd, "prod key"); err != nil {
		t.Fatal(err)
	}
	// Persisted, 0600.
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v %v", fi, err)
	}
	kr2, err := OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if env, ok := kr2.Environment("aa"); !ok || env != EnvDev {
		t.Fatalf("aa = %q %v", env, ok)
	}
	if err := kr2.Check("aa", EnvProd); !errors.Is(err, ErrEnvironment) {
		t.Fatalf("dev key for prod: %v", err)
	}
	if err := kr2.Register("aa", EnvProd, ""); !errors.Is(err, ErrEnvironment) {
		t.Fatalf("re-registering a dev key for prod: %v", err)
	}
	if err := kr2.Check("cc", EnvProd); err != nil {
		t.Fatalf("unregistered key: %v", err)
	}
	if err := kr2.Register("dd", "production", ""); err == nil {
		t.Fatal("unknown environment accepted")
	}
	for name, data := range map[string]string{
		"junk":        "nope",
		"unknown key": `{"keys":{},"x":1}`,
		"bad env":     `{"keys":{"aa":{"environment":"qa","registered":"2026-01-01T00:00:00Z"}}}`,
		"trailing":    `{"keys":{}} {}`,
	} {
		p := filepath.Join(t.TempDir(), "k.json")
		os.WriteFile(p, []byte(data), 0o600)
		if _, err := OpenKeyring(p); !errors.Is(err, ErrKeyring) {
			t.Errorf("%s: err = %v, want ErrKeyring", name, err)
		}
	}
}

func FuzzOpenKeyring(f *testing.F) {
	f.Add([]byte(`{"keys":{"aa":{"environment":"dev","registered":"2026-01-01T00:00:00Z"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "k.json")
		os.WriteFile(p, data, 0o600)
		OpenKeyring(p)
	})
}

// TestKeyringEnvironmentRuleWhenSigning: a key registered for dev may not
// sign for prod; RegisterKeys registers all or none.
func TestKeyringEnvironmentRuleWhenSigning(t *testing.T) {
	kr, err := OpenKeyring(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	devKey, _ := Generate(Ed25519)
	newKey, _ := Generate(Ed25519)
	if err := kr.RegisterKeys(EnvDev, "dev repo", devKey.Public()); err != nil {
		t.Fatal(err)
	}
	if err := kr.CheckSigners(EnvDev, devKey, nil); err != nil {
		t.Errorf("dev key signing for dev: %v", err)
	}
	if err := kr.CheckSigners(EnvProd, newKey, devKey); !errors.Is(err, ErrEnvironment) {
		t.Errorf("dev key signing for prod: err = %v, want ErrEnvironment", err)
	}
	if err := kr.RegisterKeys(EnvProd, "prod repo", newKey.Public(), devKey.Public()); !errors.Is(err, ErrEnvironment) {
		t.Errorf("registering a dev key for prod: err = %v, want ErrEnvironment", err)
	}
	id, _ := KeyID(newKey.Public())
	if _, ok := kr.Environment(id); ok {
		t.Error("a refused RegisterKeys registered some keys")
	}
}
