//go:build cgo

package pkcs11

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/airlockfw/airlock/keys"
)

// maxObjects bounds how many objects a search returns; two are enough to
// tell "exactly one" from "ambiguous".
const maxObjects = 2

// generatedIDLength is the length of the random CKA_ID Generate assigns
// when the URI names only a label.
const generatedIDLength = 16

// module is one loaded and initialized PKCS#11 library. mu serializes every
// call into it.
type module struct {
	mu       sync.Mutex
	path     string
	ctx      *p11.Ctx
	closed   bool
	sessions map[uint]p11.SessionHandle // by slot ID
	loggedIn map[uint]bool
	pins     map[uint][sha256.Size]byte // SHA-256 of the PIN that logged in
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

// loadModule returns the cached module for path, loading and initializing
// it on first use.
func loadModule(u *URI) (*module, error) {
	path := u.ModulePath
	if path == "" {
		path = os.Getenv(ModuleEnv)
	}
	if path == "" {
		return nil, fmt.Errorf("%w: no module: give module-path in the URI or set %s", ErrModule, ModuleEnv)
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: module path %q is not absolute", ErrModule, path)
	}
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m := modules[path]; m != nil {
		return m, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModule, err)
	}
	ctx := p11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w: failed to load %q (not a PKCS#11 library?)", ErrModule, path)
	}
	if err := ctx.Initialize(); err != nil && !isCKR(err, p11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("%w: failed to initialize %q: %w", ErrModule, path, err)
	}
	m := &module{path: path, ctx: ctx, sessions: map[uint]p11.SessionHandle{}, loggedIn: map[uint]bool{}, pins: map[uint][sha256.Size]byte{}}
	modules[path] = m
	return m, nil
}

// Close logs out, closes the sessions, finalizes and unloads every module
// this process loaded. Signers opened before become unusable (ErrClosed).
// Calling Close is optional: see the package documentation.
func Close() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	var errs []error
	for path, m := range modules {
		m.mu.Lock()
		for slot, sh := range m.sessions {
			if m.loggedIn[slot] {
				_ = m.ctx.Logout(sh)
			}
			_ = m.ctx.CloseSession(sh)
		}
		if err := m.ctx.Finalize(); err != nil {
			errs = append(errs, fmt.Errorf("failed to finalize %q: %w", path, err))
		}
		m.ctx.Destroy()
		m.closed = true
		m.mu.Unlock()
		delete(modules, path)
	}
	return errors.Join(errs...)
}

func isCKR(err error, code uint) bool {
	var e p11.Error
	return errors.As(err, &e) && uint(e) == code
}

// findSlot returns the one slot whose token matches u. Caller holds m.mu.
func (m *module) findSlot(u *URI) (uint, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("failed to list pkcs11 slots: %w", err)
	}
	var found []uint
	for _, s := range slots {
		if u.SlotID != nil && *u.SlotID != s {
			continue
		}
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if u.Token != "" && ti.Label != u.Token ||
			u.Manufacturer != "" && ti.ManufacturerID != u.Manufacturer ||
			u.Model != "" && ti.Model != u.Model ||
			u.Serial != "" && ti.SerialNumber != u.Serial {
			continue
		}
		if ti.Flags&p11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		found = append(found, s)
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w (token %q)", ErrTokenNotFound, u.Token)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%w token (%d match token %q): add token, serial or slot-id", ErrAmbiguous, len(found), u.Token)
}

// session returns the slot's session, opening it on first use, and logs in
// when login is set (or when a PIN is configured). Caller holds m.mu.
func (m *module) session(u *URI, login bool) (uint, p11.SessionHandle, error) {
	if m.closed {
		return 0, 0, ErrClosed
	}
	slot, err := m.findSlot(u)
	if err != nil {
		return 0, 0, err
	}
	sh, ok := m.sessions[slot]
	if !ok {
		sh, err = m.ctx.OpenSession(slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
		if err != nil {
			return 0, 0, fmt.Errorf("failed to open pkcs11 session: %w", err)
		}
		m.sessions[slot] = sh
	}
	if !login && m.loggedIn[slot] {
		return slot, sh, nil
	}
	pin, havePIN, err := u.readPIN()
	if err != nil {
		return 0, 0, err
	}
	if !havePIN {
		if !login {
			return slot, sh, nil
		}
		ti, err := m.ctx.GetTokenInfo(slot)
		if err == nil && ti.Flags&p11.CKF_LOGIN_REQUIRED == 0 {
			return slot, sh, nil
		}
		return 0, 0, fmt.Errorf("%w: the token needs a PIN: give pin-source=file:PATH or pin-source=env:NAME in the URI, or set %s", ErrPIN, PINEnv)
	}
	sum := sha256.Sum256([]byte(pin))
	if m.loggedIn[slot] {
		// PKCS#11 login state is per process and token. Every URI must
		// still carry the right PIN, so compare with the one that logged
		// in.
		want := m.pins[slot]
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			return 0, 0, fmt.Errorf("%w: the PIN differs from the one this process logged in to the token with (wrong PIN)", ErrPIN)
		}
		return slot, sh, nil
	}
	err = m.ctx.Login(sh, p11.CKU_USER, pin)
	switch {
	case err == nil, isCKR(err, p11.CKR_USER_ALREADY_LOGGED_IN):
	case isCKR(err, p11.CKR_PIN_INCORRECT), isCKR(err, p11.CKR_PIN_LEN_RANGE):
		return 0, 0, fmt.Errorf("%w: the token rejected the PIN (wrong PIN)", ErrPIN)
	case isCKR(err, p11.CKR_PIN_LOCKED):
		return 0, 0, fmt.Errorf("%w: the token's user PIN is locked", ErrPIN)
	default:
		return 0, 0, fmt.Errorf("%w: login failed: %w", ErrPIN, err)
	}
	m.pins[slot] = sum
	m.loggedIn[slot] = true
	return slot, sh, nil
}

// find returns the objects matching template (at most maxObjects). Caller
// holds m.mu.
func (m *module) find(sh p11.SessionHandle, template []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := m.ctx.FindObjectsInit(sh, template); err != nil {
		return nil, fmt.Errorf("failed to search pkcs11 objects: %w", err)
	}
	objs, _, err := m.ctx.FindObjects(sh, maxObjects)
	if ferr := m.ctx.FindObjectsFinal(sh); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("failed to search pkcs11 objects: %w", err)
	}
	return objs, nil
}

// findOne returns the one object of class matching u's label and id.
func (m *module) findOne(sh p11.SessionHandle, class uint, u *URI) (p11.ObjectHandle, error) {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class)}
	t = append(t, selector(u)...)
	objs, err := m.find(sh, t)
	if err != nil {
		return 0, err
	}
	what := map[uint]string{p11.CKO_PRIVATE_KEY: "private key", p11.CKO_PUBLIC_KEY: "public key"}[class]
	switch len(objs) {
	case 0:
		return 0, fmt.Errorf("%w: no %s with %s", ErrNotFound, what, describe(u))
	case 1:
		return objs[0], nil
	}
	return 0, fmt.Errorf("%w %s with %s: add id to the URI", ErrAmbiguous, what, describe(u))
}

func selector(u *URI) []*p11.Attribute {
	var t []*p11.Attribute
	if u.Object != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		t = append(t, p11.NewAttribute(p11.CKA_ID, u.ID))
	}
	return t
}

func describe(u *URI) string {
	switch {
	case u.Object != "" && len(u.ID) > 0:
		return fmt.Sprintf("object %q and id %x", u.Object, u.ID)
	case u.Object != "":
		return fmt.Sprintf("object %q", u.Object)
	}
	return fmt.Sprintf("id %x", u.ID)
}

// parseKeyURI parses a URI that must name a key object.
func parseKeyURI(s string) (*URI, error) {
	u, err := ParseURI(s)
	if err != nil {
		return nil, err
	}
	if u.Object == "" && len(u.ID) == 0 {
		return nil, fmt.Errorf("%w: names no key: give object=LABEL or id=ID", ErrURI)
	}
	return u, nil
}

// Open returns a crypto.Signer for the private key the URI names (by
// object label and/or id), with the public key read from the public key
// object of the same CKA_ID (or, when the private key has no id, the same
// label). It logs in to the token with the URI's PIN.
func Open(uri string) (crypto.Signer, error) {
	o, err := findObject(uri, true, p11.CKO_PRIVATE_KEY)
	if err != nil {
		return nil, err
	}
	defer o.unlock()
	m, slot, sh, priv := o.m, o.slot, o.sh, o.h
	attrs, err := m.ctx.GetAttributeValue(sh, priv, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_ID, nil),
		p11.NewAttribute(p11.CKA_LABEL, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read private key attributes: %w", err)
	}
	pu := &URI{ID: attrs[0].Value}
	if len(pu.ID) == 0 {
		pu.Object = string(attrs[1].Value)
		if pu.Object == "" {
			return nil, fmt.Errorf("%w: private key has neither id nor label to find its public key", ErrNotFound)
		}
	}
	pubH, err := m.findOne(sh, p11.CKO_PUBLIC_KEY, pu)
	if err != nil {
		return nil, fmt.Errorf("failed to find the public key of the private key: %w", err)
	}
	pub, err := m.publicKey(sh, pubH)
	if err != nil {
		return nil, err
	}
	return &signer{m: m, slot: slot, key: priv, pub: pub}, nil
}

// PublicKey returns the public key of the key pair the URI names, read from
// its public key object. It logs in only if the URI (or the environment)
// gives a PIN.
func PublicKey(uri string) (crypto.PublicKey, error) {
	o, err := findObject(uri, false, p11.CKO_PUBLIC_KEY)
	if err != nil {
		return nil, err
	}
	defer o.unlock()
	return o.m.publicKey(o.sh, o.h)
}

// object is one token object found through a URI, with the module locked
// and a session open; call unlock when done with it.
type object struct {
	m      *module
	slot   uint
	sh     p11.SessionHandle
	h      p11.ObjectHandle
	unlock func()
}

// findObject parses uri, loads its module, locks it, opens a session
// (logged in when login) and finds the one object of class the URI names.
func findObject(uri string, login bool, class uint) (*object, error) {
	u, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	if class == p11.CKO_PRIVATE_KEY && u.Type == "public" {
		return nil, fmt.Errorf("%w: type=public names no private key", ErrURI)
	}
	m, err := loadModule(u)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	slot, sh, err := m.session(u, login)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	h, err := m.findOne(sh, class, u)
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	return &object{m: m, slot: slot, sh: sh, h: h, unlock: m.mu.Unlock}, nil
}

// Generate creates a key pair of type t inside the token the URI names,
// labelled with the URI's object and id (a random 16-byte id when the URI
// gives none). For every key type the private key is a token object with
// CKA_PRIVATE, CKA_SENSITIVE and CKA_SIGN set and CKA_EXTRACTABLE,
// CKA_DECRYPT, CKA_UNWRAP, CKA_DERIVE and CKA_SIGN_RECOVER unset, so it can
// only sign and never leaves the token; the public key object has
// CKA_VERIFY set and CKA_ENCRYPT, CKA_WRAP, CKA_DERIVE and
// CKA_VERIFY_RECOVER unset. Generate refuses (ErrExists) when any object with the label or id
// exists.
func Generate(uri string, t keys.Type) (crypto.PublicKey, error) {
	u, err := parseKeyURI(uri)
	if err != nil {
		return nil, err
	}
	mech, pubT, privT, err := templates(t)
	if err != nil {
		return nil, err
	}
	m, err := loadModule(u)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, sh, err := m.session(u, true)
	if err != nil {
		return nil, err
	}
	// Refuse to shadow any existing object, of any class, by label or id.
	for _, sel := range selector(u) {
		objs, err := m.find(sh, []*p11.Attribute{sel})
		if err != nil {
			return nil, err
		}
		if len(objs) > 0 {
			return nil, fmt.Errorf("%w (%s)", ErrExists, describe(u))
		}
	}
	id := u.ID
	if len(id) == 0 {
		id = make([]byte, generatedIDLength)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		objs, err := m.find(sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id)})
		if err != nil {
			return nil, err
		}
		if len(objs) > 0 {
			return nil, fmt.Errorf("%w (random id %x)", ErrExists, id)
		}
	}
	common := []*p11.Attribute{p11.NewAttribute(p11.CKA_TOKEN, true), p11.NewAttribute(p11.CKA_ID, id)}
	if u.Object != "" {
		common = append(common, p11.NewAttribute(p11.CKA_LABEL, u.Object))
	}
	pubT = append(append(pubT, common...),
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_PRIVATE, false),
	)
	privT = append(append(privT, common...),
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
	)
	pubH, privH, err := m.ctx.GenerateKeyPair(sh, []*p11.Mechanism{p11.NewMechanism(mech, nil)}, pubT, privT)
	if err != nil {
		return nil, fmt.Errorf("failed to generate %s key pair in the token: %w", t, err)
	}
	pub, err := m.publicKey(sh, pubH)
	if err == nil {
		var got keys.Type
		if got, err = keys.TypeOf(pub); err == nil && got != t {
			err = fmt.Errorf("token generated a %s key, want %s", got, t)
		}
	}
	if err != nil {
		_ = m.ctx.DestroyObject(sh, privH)
		_ = m.ctx.DestroyObject(sh, pubH)
		return nil, err
	}
	return pub, nil
}
