package pkcs11

import (
	"context"
	"errors"
	"testing"

	"github.com/airlockfw/airlock/keys"
)

// TestImportRegistersTheBackend: with this package linked in, keys.OpenSigner
// hands pkcs11: URIs to it (it then fails on the missing module or, without
// cgo, with ErrNoCgo) instead of reporting that no backend is registered.
func TestImportRegistersTheBackend(t *testing.T) {
	_, err := keys.OpenSigner(context.Background(), "pkcs11:token=none;object=none?module-path=/nonexistent/libnone.so&pin-value=1234", keys.OpenOptions{})
	if err == nil || errors.Is(err, keys.ErrNoBackend) {
		t.Fatalf("OpenSigner(pkcs11:) = %v, want an error from the pkcs11 backend", err)
	}
}
