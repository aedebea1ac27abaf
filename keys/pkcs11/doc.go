// Package pkcs11 signs with keys held in a hardware security module (HSM)
// through PKCS#11, named by RFC 7512 pkcs11: URIs, and returns them as
// crypto.Signer so that every Airlock signing role (root, targets, product
// roles, snapshot, timestamp, the server's online keys) can use an HSM key
// exactly like a key file (see package keys).
//
// A URI names the token (token, manufacturer, model, serial, slot-id), the
// key object (object = CKA_LABEL, id = CKA_ID, percent-encoded bytes), the
// module (module-path, or the AIRLOCK_PKCS11_MODULE environment variable)
// and where the user PIN comes from: pin-source=file:PATH (first line of
// the file), pin-source=env:NAME, or the AIRLOCK_HSM_PIN environment
// variable when no pin-source is given. pin-value is refused: a PIN must
// never be on a command line. For example:
//
//	pkcs11:token=airlock-root-1;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/airlock/root-1.pin
//
// Supported key types and mechanisms: Ed25519 (CKM_EDDSA over the whole
// message), ECDSA P-256 and P-384 (CKM_ECDSA over the digest; the raw r||s
// result is re-encoded as ASN.1 DER, as crypto.Signer requires) and RSA
// (CKM_RSA_PKCS_PSS with SHA-256, MGF1-SHA-256 and a salt as long as the
// hash; PKCS#1 v1.5 is refused).
//
// Threat model. Trusted: the PKCS#11 module named by the URI (it is loaded
// into this process and runs with its privileges, so module-path must be an
// absolute path to a library the operator installed), the token, and
// whoever supplies the PIN. Not trusted: the URI's text (parsed strictly,
// with named limits) and every value the token returns (public keys are
// parsed and checked against the supported types; signature lengths are
// checked). The private key never leaves the token: Generate creates it
// inside the token with CKA_SENSITIVE=true, CKA_EXTRACTABLE=false,
// CKA_PRIVATE=true and CKA_SIGN=true as its only use (decrypt, unwrap,
// derive and sign-recover explicitly off, for every key type), and this
// package never asks for its value. The PIN is read from a file or the environment, used for one
// C_Login per token and process, and never logged or put in an error.
//
// Sessions: each module is loaded and initialized once per process (cached
// by module path) and each token gets one read-write session, logged in
// once; a mutex per module serializes all calls, so Signers are safe for
// concurrent use. Modules stay loaded until Close; a process that exits
// without calling Close leaves cleanup to the operating system, which is
// safe for PKCS#11 (sessions end with the process).
//
// PKCS#11 needs cgo: in a build with CGO_ENABLED=0, ParseURI still works and
// every other function returns ErrNoCgo.
package pkcs11

import "errors"

// Errors callers branch on (besides ErrURI, ErrPINOnCommandLine and ErrPIN).
var (
	// ErrNoCgo is returned by every HSM operation in a build without cgo.
	ErrNoCgo = errors.New("PKCS#11 support needs a cgo build of airlock (CGO_ENABLED=1)")
	// ErrModule is returned when the PKCS#11 module cannot be loaded or
	// initialized.
	ErrModule = errors.New("pkcs11 module")
	// ErrTokenNotFound is returned when no token matches the URI.
	ErrTokenNotFound = errors.New("no pkcs11 token matches the URI")
	// ErrNotFound is returned when no key object matches the URI.
	ErrNotFound = errors.New("no pkcs11 key object matches the URI")
	// ErrAmbiguous is returned when several tokens or key objects match.
	ErrAmbiguous = errors.New("pkcs11 URI matches more than one")
	// ErrExists is returned by Generate when an object with the URI's label
	// or id already exists on the token.
	ErrExists = errors.New("pkcs11 object with this label or id already exists")
	// ErrClosed is returned by a Signer whose module was closed.
	ErrClosed = errors.New("pkcs11 module was closed")
	// ErrMechanism is returned for signing options the package refuses,
	// such as RSA PKCS#1 v1.5 or Ed25519ph.
	ErrMechanism = errors.New("unsupported pkcs11 signing mechanism")
)
