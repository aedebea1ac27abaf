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

// KeyUsage reads the usage attributes of the key object of class
// ("private" or "public") that uri names, by attribute name.
func KeyUsage(uri, class string) (map[string]bool, error) {
	cls, names := uint(p11.CKO_PRIVATE_KEY), map[uint]string{
		p11.CKA_SIGN: "CKA_SIGN", p11.CKA_SIGN_RECOVER: "CKA_SIGN_RECOVER",
		p11.CKA_DECRYPT: "CKA_DECRYPT", p11.CKA_UNWRAP: "CKA_UNWRAP",
		p11.CKA_DERIVE: "CKA_DERIVE", p11.CKA_EXTRACTABLE: "CKA_EXTRACTABLE",
		p11.CKA_SENSITIVE: "CKA_SENSITIVE", p11.CKA_PRIVATE: "CKA_PRIVATE",
		p11.CKA_TOKEN: "CKA_TOKEN",
	}
	if class == "public" {
		cls, names = p11.CKO_PUBLIC_KEY, map[uint]string{
			p11.CKA_VERIFY: "CKA_VERIFY", p11.CKA_VERIFY_RECOVER: "CKA_VERIFY_RECOVER",
			p11.CKA_ENCRYPT: "CKA_ENCRYPT", p11.CKA_WRAP: "CKA_WRAP",
			p11.CKA_DERIVE: "CKA_DERIVE", p11.CKA_PRIVATE: "CKA_PRIVATE",
			p11.CKA_TOKEN: "CKA_TOKEN",
		}
	}
	o, err := findObject(uri, true, cls)
	if err != nil {
		return nil, err
	}
	defer o.unlock()
	got := make(map[string]bool)
	for t, name := range names {
		a, err := o.m.ctx.GetAttributeValue(o.sh, o.h, []*p11.Attribute{p11.NewAttribute(t, nil)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(a) != 1 || len(a[0].Value) != 1 {
			return nil, fmt.Errorf("%s: not a CK_BBOOL", name)
		}
		got[name] = a[0].Value[0] != 0
	}
	return got, nil
}

// TryDecryptInit calls C_DecryptInit with CKM_RSA_PKCS on the private key
// uri names and returns its error (nil if the token accepted; the
// operation is then finished with an empty C_Decrypt).
func TryDecryptInit(uri string) error {
	o, err := findObject(uri, true, p11.CKO_PRIVATE_KEY)
	if err != nil {
		return err
	}
	defer o.unlock()
	err = o.m.ctx.DecryptInit(o.sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS, nil)}, o.h)
	if err == nil {
		_, _ = o.m.ctx.Decrypt(o.sh, nil)
	}
	return err
}

// TryDeriveKey calls C_DeriveKey with CKM_ECDH1_DERIVE (the key's own
// public point) on the private key uri names and returns its error.
func TryDeriveKey(uri string) error {
	o, err := findObject(uri, true, p11.CKO_PRIVATE_KEY)
	if err != nil {
		return err
	}
	defer o.unlock()
	params := p11.NewECDH1DeriveParams(p11.CKD_NULL, nil, make([]byte, 65))
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_TOKEN, false),
	}
	h, err := o.m.ctx.DeriveKey(o.sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDH1_DERIVE, params)}, o.h, tmpl)
	if err == nil {
		_ = o.m.ctx.DestroyObject(o.sh, h)
	}
	return err
}

// IsFunctionNotPermittedErr reports whether err is
// CKR_KEY_FUNCTION_NOT_PERMITTED.
func IsFunctionNotPermittedErr(err error) bool {
	return isCKR(err, p11.CKR_KEY_FUNCTION_NOT_PERMITTED)
}
