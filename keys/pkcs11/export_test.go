//go:build cgo

package pkcs11

import (
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// KeyProtection is what the tests assert about a private key object.
type KeyProtection struct {
	Extractable, Sensitive, NeverExtractable, AlwaysSensitive, Private, Token bool
	// ValueErr is the error from C_GetAttributeValue(CKA_VALUE) (RSA:
	// CKA_PRIVATE_EXPONENT); nil would mean the secret left the token.
	ValueErr error
}

// PrivateKeyProtection reads the protection attributes of the private key
// uri names and tries to read its secret value.
func PrivateKeyProtection(uri string) (*KeyProtection, error) {
	o, err := findObject(uri, true, p11.CKO_PRIVATE_KEY)
	if err != nil {
		return nil, err
	}
	defer o.unlock()
	m, sh, h := o.m, o.sh, o.h
	types := []uint{p11.CKA_EXTRACTABLE, p11.CKA_SENSITIVE, p11.CKA_NEVER_EXTRACTABLE, p11.CKA_ALWAYS_SENSITIVE, p11.CKA_PRIVATE, p11.CKA_TOKEN}
	var req []*p11.Attribute
	for _, t := range types {
		req = append(req, p11.NewAttribute(t, nil))
	}
	a, err := m.ctx.GetAttributeValue(sh, h, req)
	if err != nil {
		return nil, err
	}
	b := func(i int) bool {
		if len(a[i].Value) != 1 {
			panic(fmt.Sprintf("CK_BBOOL attribute %#x has %d bytes", types[i], len(a[i].Value)))
		}
		return a[i].Value[0] != 0
	}
	kp := &KeyProtection{Extractable: b(0), Sensitive: b(1), NeverExtractable: b(2), AlwaysSensitive: b(3), Private: b(4), Token: b(5)}
	secret := uint(p11.CKA_VALUE)
	kt, err := m.ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return nil, err
	}
	if k, _ := ulong(kt[0].Value); k == p11.CKK_RSA {
		secret = p11.CKA_PRIVATE_EXPONENT
	}
	v, err := m.ctx.GetAttributeValue(sh, h, []*p11.Attribute{p11.NewAttribute(secret, nil)})
	if err == nil && len(v) == 1 && len(v[0].Value) == 0 {
		err = fmt.Errorf("empty value") // unavailable but no error code
	}
	kp.ValueErr = err
	return kp, nil
}

// IsSensitiveErr reports whether err is CKR_ATTRIBUTE_SENSITIVE.
func IsSensitiveErr(err error) bool { return isCKR(err, p11.CKR_ATTRIBUTE_SENSITIVE) }
