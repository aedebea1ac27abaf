package provenance

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/keys"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// The formats this package accepts (one suite per format version).
const (
	// PayloadType is the only DSSE payload type accepted.
	PayloadType = "application/vnd.in-toto+json"
	// StatementType is the only in-toto Statement "_type" accepted.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType is the only predicate type accepted: SLSA provenance v1.
	PredicateType = "https://slsa.dev/provenance/v1"
)

// Size limits of the untrusted input. docs/transparency.md, "Provenance".
const (
	// MaxEnvelopeSize bounds the envelope file.
	MaxEnvelopeSize = 1 << 20
	// MaxPayloadSize bounds the decoded statement.
	MaxPayloadSize = 768 << 10
	// MaxSignatures bounds the signatures of one envelope.
	MaxSignatures = 16
	// MaxSignatureSize bounds one decoded signature (an RSA-4096
	// signature is 512 bytes, a P-384 DER signature about 104).
	MaxSignatureSize = 1024
	// MaxKeyIDLength bounds a signature's optional key ID hint.
	MaxKeyIDLength = 256
	// MaxDepth bounds the JSON nesting of the envelope and the statement.
	MaxDepth = 32
)

// Errors callers branch on. Every error of this package wraps
// ErrProvenance ("provenance"), and each failed check names itself.
var (
	ErrProvenance = errors.New("provenance")
	// ErrMalformed: the envelope, statement or predicate does not parse.
	ErrMalformed = fmt.Errorf("%w: malformed", ErrProvenance)
	// ErrSignature: too few of the policy's signer keys signed.
	ErrSignature = fmt.Errorf("%w: envelope signatures", ErrProvenance)
	// ErrSubject: no subject has the release image's digest.
	ErrSubject = fmt.Errorf("%w: subject digest", ErrProvenance)
	// ErrPolicy: the provenance is well formed and signed but the product's
	// policy does not allow it (builder, source, build type), or the
	// policy itself is invalid. Its text is "provenance", so that a
	// message reads "provenance: builder …".
	ErrPolicy error = &sentinel{"provenance", ErrProvenance}
)

type sentinel struct {
	msg    string
	parent error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.parent }

// Envelope is a parsed DSSE envelope.
type Envelope struct {
	PayloadType string
	Payload     []byte // decoded
	Signatures  []Signature
}

// Signature is one DSSE signature: the decoded bytes and the optional key
// ID hint (unauthenticated; only used to print).
type Signature struct {
	KeyID string
	Sig   []byte
}

type wireEnvelope struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []wireSignature `json:"signatures"`
}

type wireSignature struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"`
}

// ParseEnvelope parses a DSSE envelope strictly: at most MaxEnvelopeSize
// bytes, one JSON object with exactly the fields payloadType, payload and
// signatures (keyid optional in each signature), no duplicate keys,
// standard padded base64 only (DSSE also allows URL-safe base64; one
// encoding is accepted here), payload type PayloadType, 1 to MaxSignatures
// signatures. It does not check signatures (Envelope.Verify).
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w envelope: %d bytes, the limit is %d", ErrMalformed, len(data), MaxEnvelopeSize)
	}
	var w wireEnvelope
	if err := (strictjson.Limits{Size: MaxEnvelopeSize, Depth: MaxDepth}).Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w envelope: %w", ErrMalformed, err)
	}
	if w.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w envelope: payload type %q, want %q", ErrMalformed, w.PayloadType, PayloadType)
	}
	payload, err := strictBase64(w.Payload, MaxPayloadSize)
	if err != nil {
		return nil, fmt.Errorf("%w envelope: payload: %w", ErrMalformed, err)
	}
	if len(w.Signatures) == 0 || len(w.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("%w envelope: %d signatures, want 1 to %d", ErrMalformed, len(w.Signatures), MaxSignatures)
	}
	e := &Envelope{PayloadType: w.PayloadType, Payload: payload}
	for i, s := range w.Signatures {
		if len(s.KeyID) > MaxKeyIDLength {
			return nil, fmt.Errorf("%w envelope: signature %d: key ID is %d bytes, the limit is %d", ErrMalformed, i, len(s.KeyID), MaxKeyIDLength)
		}
		sig, err := strictBase64(s.Sig, MaxSignatureSize)
		if err != nil || len(sig) == 0 {
			return nil, fmt.Errorf("%w envelope: signature %d: want 1 to %d bytes of standard base64", ErrMalformed, i, MaxSignatureSize)
		}
		e.Signatures = append(e.Signatures, Signature{KeyID: s.KeyID, Sig: sig})
	}
	return e, nil
}

func strictBase64(s string, max int) ([]byte, error) {
	if base64.StdEncoding.DecodedLen(len(s)) > max+2 {
		return nil, fmt.Errorf("over the limit of %d bytes", max)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not standard padded base64")
	}
	if len(b) > max {
		return nil, fmt.Errorf("%d bytes, the limit is %d", len(b), max)
	}
	return b, nil
}

// Marshal returns the envelope's JSON encoding (standard base64), the
// inverse of ParseEnvelope.
func (e *Envelope) Marshal() ([]byte, error) {
	w := wireEnvelope{PayloadType: e.PayloadType, Payload: base64.StdEncoding.EncodeToString(e.Payload), Signatures: []wireSignature{}}
	for _, s := range e.Signatures {
		w.Signatures = append(w.Signatures, wireSignature{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
	}
	return marshalCompact(w)
}

// PAE is the DSSE pre-authentication encoding the signatures cover.
func (e *Envelope) PAE() []byte { return dsse.PAE(e.PayloadType, e.Payload) }

// Verify checks the signatures against signers, the policy's public keys:
// it counts distinct keys (not key IDs, not signatures) that produced a
// valid signature over the PAE, and fails with ErrSignature below
// threshold. It returns the TUF key IDs (keys.KeyID) of the keys that
// signed, sorted. A signature by a key outside signers is ignored.
func (e *Envelope) Verify(signers []crypto.PublicKey, threshold int) ([]string, error) {
	if threshold < 1 || threshold > len(signers) {
		return nil, fmt.Errorf("%w: threshold %d of %d keys", ErrSignature, threshold, len(signers))
	}
	pae := e.PAE()
	var ids []string
	for _, pub := range signers {
		id, err := keys.KeyID(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSignature, err)
		}
		if slices.Contains(ids, id) {
			continue // the same key twice counts once
		}
		for _, s := range e.Signatures {
			if keys.VerifyMessage(pub, pae, s.Sig) {
				ids = append(ids, id)
				break
			}
		}
	}
	slices.Sort(ids)
	if len(ids) < threshold {
		return ids, fmt.Errorf("%w: %d of the %d policy keys signed validly, need %d", ErrSignature, len(ids), len(signers), threshold)
	}
	return ids, nil
}

// Sign returns an envelope of payload signed by signers (keys.SignMessage
// over the PAE), each signature carrying its TUF key ID as hint. It is how
// tests and tools make envelopes; builders usually sign with their own
// tooling.
func Sign(payload []byte, signers ...crypto.Signer) (*Envelope, error) {
	e := &Envelope{PayloadType: PayloadType, Payload: payload}
	for _, s := range signers {
		sig, err := keys.SignMessage(s, e.PAE())
		if err != nil {
			return nil, err
		}
		id, err := keys.KeyID(s.Public())
		if err != nil {
			return nil, err
		}
		e.Signatures = append(e.Signatures, Signature{KeyID: id, Sig: sig})
	}
	return e, nil
}

// Digest is the SHA-256 and length of an envelope file: what the release
// metadata binds (custom.airlock.provenance).
func Digest(data []byte) (sha string, length int64) {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), int64(len(data))
}
