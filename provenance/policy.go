package provenance

import (
	"crypto"
	"fmt"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/keys"
)

// Policy limits.
const (
	// MaxPolicyEntries bounds each list of a policy.
	MaxPolicyEntries = 16
)

// Policy is a product's publish policy for provenance. It is vendor
// configuration (airlock-repo.json), never served.
type Policy struct {
	// Builders are the accepted runDetails.builder.id values (exact match).
	Builders []string `json:"builders"`
	// Sources are the accepted source repositories, compared after
	// NormalizeRepo; the provenance must name a source commit.
	Sources []string `json:"sources"`
	// BuildTypes are the accepted buildDefinition.buildType values (exact
	// match); empty accepts any build type.
	BuildTypes []string `json:"build_types,omitempty"`
	// Signers are the builder signing keys (PEM public keys, as written by
	// `airlock key generate`), of which Threshold must have signed the
	// envelope.
	Signers   []string `json:"signers"`
	Threshold int      `json:"threshold"`
}

// Validate checks the policy: 1 to MaxPolicyEntries builders, sources and
// signers (build types 0 to MaxPolicyEntries), no duplicates, every signer
// a supported public key, 1 <= threshold <= distinct signer keys.
func (p *Policy) Validate() error {
	for _, l := range []struct {
		name     string
		list     []string
		optional bool
	}{{"builder", p.Builders, false}, {"source", p.Sources, false}, {"build type", p.BuildTypes, true}, {"signer", p.Signers, false}} {
		if len(l.list) == 0 && !l.optional {
			return fmt.Errorf("%w: the policy needs at least one %s", ErrPolicy, l.name)
		}
		if len(l.list) > MaxPolicyEntries {
			return fmt.Errorf("%w: %d %ss, the limit is %d", ErrPolicy, len(l.list), l.name, MaxPolicyEntries)
		}
		for i, s := range l.list {
			if s == "" || checkString(s) != nil && l.name != "signer" {
				return fmt.Errorf("%w: %s %q is empty or invalid", ErrPolicy, l.name, s)
			}
			if slices.Contains(l.list[:i], s) {
				return fmt.Errorf("%w: duplicate %s %q", ErrPolicy, l.name, s)
			}
		}
	}
	pubs, err := p.SignerKeys()
	if err != nil {
		return err
	}
	if p.Threshold < 1 || p.Threshold > len(pubs) {
		return fmt.Errorf("%w: threshold %d, want 1 to %d (the signer keys)", ErrPolicy, p.Threshold, len(pubs))
	}
	return nil
}

// SignerKeys parses the policy's signer keys; the same key given twice is
// an error.
func (p *Policy) SignerKeys() ([]crypto.PublicKey, error) {
	var out []crypto.PublicKey
	var ids []string
	for _, s := range p.Signers {
		pub, err := keys.ParsePublic([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("%w: signer key: %w", ErrPolicy, err)
		}
		id, err := keys.KeyID(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: signer key: %w", ErrPolicy, err)
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("%w: signer key %s is listed twice", ErrPolicy, id)
		}
		ids = append(ids, id)
		out = append(out, pub)
	}
	return out, nil
}

// SignerIDs returns the TUF key IDs of the signer keys, in policy order.
func (p *Policy) SignerIDs() ([]string, error) {
	pubs, err := p.SignerKeys()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, pub := range pubs {
		id, _ := keys.KeyID(pub)
		ids = append(ids, id)
	}
	return ids, nil
}

// Attestation is a checked provenance envelope: what it says and who
// signed it.
type Attestation struct {
	Envelope  *Envelope
	Statement *Statement
	// SHA256 and Length are the envelope file's digest and size.
	SHA256 string
	Length int64
	// Signers are the key IDs of the policy keys that signed (empty when
	// it was read without a policy).
	Signers []string
	// Source is the source repository and commit, if the provenance names
	// one.
	Source    Source
	HasSource bool
}

// BuilderID is runDetails.builder.id.
func (a *Attestation) BuilderID() string { return a.Statement.Predicate.RunDetails.Builder.ID }

// BuildType is buildDefinition.buildType.
func (a *Attestation) BuildType() string { return a.Statement.Predicate.BuildDefinition.BuildType }

// Read parses an envelope file and its statement without checking any
// signature or policy: to show a provenance whose binding to a release was
// checked another way (its digest in signed release metadata).
func Read(data []byte) (*Attestation, error) {
	e, err := ParseEnvelope(data)
	if err != nil {
		return nil, err
	}
	st, err := ParseStatement(e.Payload)
	if err != nil {
		return nil, err
	}
	a := &Attestation{Envelope: e, Statement: st}
	a.SHA256, a.Length = Digest(data)
	a.Source, a.HasSource = st.Predicate.Source()
	return a, nil
}

// Check reads the envelope file data and checks it for a release of
// product whose installed image has the SHA-256 imageSHA256 (lowercase
// hex; "" skips the subject check, for a check made before the image is
// hashed), against policy pol (nil: no policy; only the format and the
// subject are checked). Every failure names its check:
//
//	provenance: envelope signatures: 1 of the 2 policy keys signed validly, need 2
//	provenance: builder "x" is not allowed for acme/router-x1
//	provenance: source repository "https://…" is not allowed for acme/router-x1
//	provenance: build type "…" is not allowed for acme/router-x1
//	provenance: subject digest: no subject has the image's sha256 …
func Check(data []byte, product, imageSHA256 string, pol *Policy) (*Attestation, error) {
	a, err := Read(data)
	if err != nil {
		return nil, err
	}
	if pol != nil {
		if err := pol.Validate(); err != nil {
			return nil, err
		}
		pubs, _ := pol.SignerKeys()
		if a.Signers, err = a.Envelope.Verify(pubs, pol.Threshold); err != nil {
			return nil, err
		}
		if id := a.BuilderID(); !slices.Contains(pol.Builders, id) {
			return nil, fmt.Errorf("%w: builder %q is not allowed for %s (allowed: %s)", ErrPolicy, id, product, strings.Join(pol.Builders, ", "))
		}
		if bt := a.BuildType(); len(pol.BuildTypes) > 0 && !slices.Contains(pol.BuildTypes, bt) {
			return nil, fmt.Errorf("%w: build type %q is not allowed for %s (allowed: %s)", ErrPolicy, bt, product, strings.Join(pol.BuildTypes, ", "))
		}
		if !a.HasSource {
			return nil, fmt.Errorf("%w: source: the provenance names no source repository and commit (a resolvedDependencies entry with a uri and a gitCommit digest)", ErrPolicy)
		}
		allowed := false
		for _, s := range pol.Sources {
			if NormalizeRepo(s) == a.Source.Repo {
				allowed = true
			}
		}
		if !allowed {
			return nil, fmt.Errorf("%w: source repository %q is not allowed for %s (allowed: %s)", ErrPolicy, a.Source.Repo, product, strings.Join(pol.Sources, ", "))
		}
	}
	if imageSHA256 != "" && !a.Statement.HasSubjectSHA256(imageSHA256) {
		return nil, fmt.Errorf("%w: no subject has the release image's sha256 %s (the installed image, before compression)", ErrSubject, imageSHA256)
	}
	return a, nil
}
