package keys

import "testing"

// TestVerifyMessage: VerifyMessage accepts what SignMessage signs, for
// every key type, and nothing else.
func TestVerifyMessage(t *testing.T) {
	for _, typ := range Types {
		s, err := Generate(typ)
		if err != nil {
			t.Fatal(err)
		}
		other, err := Generate(typ)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("DSSEv1 28 application/vnd.in-toto+json 2 {}")
		sig, err := SignMessage(s, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !VerifyMessage(s.Public(), msg, sig) {
			t.Errorf("%s: a valid signature was refused", typ)
		}
		if VerifyMessage(other.Public(), msg, sig) {
			t.Errorf("%s: another key's signature was accepted", typ)
		}
		if VerifyMessage(s.Public(), append(msg, '!'), sig) {
			t.Errorf("%s: a signature over another message was accepted", typ)
		}
		if VerifyMessage(s.Public(), msg, sig[:len(sig)-1]) {
			t.Errorf("%s: a truncated signature was accepted", typ)
		}
	}
	if VerifyMessage("not a key", nil, nil) {
		t.Error("an unsupported key verified")
	}
}
