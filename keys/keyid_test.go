package keys_test

import (
	. "github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// KeyID is computed without go-tuf (the device build does not link it); it
// must still be go-tuf's key ID of the key object TUFKey returns, and that
// object must be go-tuf's KeyFromPublicKey apart from the P-384 scheme.
func TestKeyIDMatchesGoTUF(t *testing.T) {
	for _, typ := range Types {
		t.Run(string(typ), func(t *testing.T) {
			priv, err := Generate(typ)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := tufsign.Key(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := metadata.KeyFromPublicKey(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			if typ == ECDSAP384 {
				theirs.Scheme = metadata.KeySchemeECDSA_SHA2_P384
			}
			if ours.Type != theirs.Type || ours.Scheme != theirs.Scheme || ours.Value.PublicKey != theirs.Value.PublicKey {
				t.Fatalf("TUFKey = %+v, go-tuf = %+v", ours, theirs)
			}
			want, err := theirs.ID()
			if err != nil {
				t.Fatal(err)
			}
			if got, err := KeyID(priv.Public()); err != nil || got != want {
				t.Fatalf("KeyID = %q, %v; go-tuf ID = %q", got, err, want)
			}
		})
	}
}
