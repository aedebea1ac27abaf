package keys_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	. "github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/keys/tufsign"
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/airlockfw/airlock/trust"
)

// FuzzSignThenVerify signs metadata the way the vendor side does (go-tuf
// types, TUFKey, Sign) and verifies it the way the device does
// (trust.VerifyBootChain): whatever Sign signs, the device accepts, with
// the same target. Sign refuses values the device would refuse.
func FuzzSignThenVerify(f *testing.F) {
	var signers []crypto.Signer
	for _, typ := range Types {
		s, err := Generate(typ)
		if err != nil {
			f.Fatal(err)
		}
		signers = append(signers, s)
	}
	f.Add("acme/router-x1/1.0.0/firmware.img", []byte(`{"airlock":{"version":"1.0.0","models":["x1"]}}`), int64(1<<20), uint8(0), "prod")
	f.Add("a", []byte(`{"s":"q\"\\\n\u0000<>&\u2028é"}`), int64(0), uint8(1), "\x00\"\\")
	f.Add("p/é/ſ.img", []byte(`[1,-2,{"b":{},"a":[]}]`), int64(7), uint8(2), "")
	f.Add("x", []byte(`{"n":-0}`), int64(3), uint8(3), "e")
	f.Add("y", []byte(`{"n":1.5}`), int64(3), uint8(0), "e")
	f.Add("z", []byte(`{"n":18446744073709551616,"dup":1,"dup":2}`), int64(3), uint8(0), "e")
	expires := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, path string, custom []byte, length int64, kt uint8, env string) {
		if !utf8.ValidString(path) {
			return // encoding/json would write another path
		}
		s := signers[int(kt)%len(signers)]
		tk, err := tufsign.Key(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		root := metadata.Root(expires)
		for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
			if err := root.Signed.AddKey(tk, role); err != nil {
				t.Fatal(err)
			}
		}
		root.Signed.UnrecognizedFields = map[string]any{"x-environment": env}
		if err := tufsign.Sign(root, s); err != nil {
			t.Fatal(err)
		}
		rootBytes, err := root.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}

		targets := metadata.Targets(expires)
		sum := sha256.Sum256([]byte(path))
		tf := &metadata.TargetFiles{Length: length & math.MaxInt64, Hashes: metadata.Hashes{"sha256": sum[:]}}
		if json.Valid(custom) {
			raw := json.RawMessage(bytes.Clone(custom))
			tf.Custom = &raw
		}
		targets.Signed.Targets[path] = tf
		if err := tufsign.Sign(targets, s); err != nil {
			return // not canonical-JSON compatible (fractions, -0, duplicate keys)
		}
		targetsBytes, err := targets.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}

		got, err := trust.VerifyBootChain(rootBytes, nil, targetsBytes, nil, path)
		if errors.Is(err, trust.ErrInvalidName) {
			return // empty or overlong path
		}
		if err != nil {
			t.Fatalf("the device refuses vendor-signed metadata: %v\n%s", err, targetsBytes)
		}
		if got.Path != path || got.Length != tf.Length || !bytes.Equal(got.Hashes["sha256"], sum[:]) {
			t.Fatalf("target = %+v, signed %+v", got, tf)
		}
		if (got.Custom == nil) != (tf.Custom == nil) {
			t.Fatalf("custom = %v, signed %v", got.Custom, tf.Custom)
		}
		if got.Custom != nil {
			a, errA := canonjson.Canonicalize(*got.Custom, canonjson.MaxDepth)
			b, errB := canonjson.Canonicalize(*tf.Custom, canonjson.MaxDepth)
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Fatalf("custom = %s, signed %s", *got.Custom, *tf.Custom)
			}
		}
	})
}
