//go:build !cgo

package pkcs11

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/keys"
)

func TestNoCgoBuildSaysWhy(t *testing.T) {
	const uri = "pkcs11:token=t;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so"
	_, err1 := Open(uri)
	_, err2 := Generate(uri, keys.Ed25519)
	_, err3 := PublicKey(uri)
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, ErrNoCgo) || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
			t.Errorf("error = %v, want ErrNoCgo naming CGO_ENABLED=1", err)
		}
	}
	if _, err := ParseURI(uri); err != nil {
		t.Errorf("ParseURI works without cgo, got %v", err)
	}
}
