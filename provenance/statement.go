package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/airlockfw/airlock/internal/strictjson"
)

// Limits of a statement and its predicate.
const (
	// MaxSubjects bounds the subjects of a statement.
	MaxSubjects = 64
	// MaxDigests bounds the algorithms of one digest set.
	MaxDigests = 8
	// MaxDependencies bounds resolvedDependencies and byproducts.
	MaxDependencies = 512
	// MaxStringLength bounds every string field (URIs, IDs, names).
	MaxStringLength = 4096
	// MaxParametersSize bounds each free-form object (externalParameters,
	// internalParameters, annotations, builder version), as encoded.
	MaxParametersSize = 256 << 10
)

// Statement is a parsed in-toto Statement v1 with a SLSA provenance v1
// predicate.
type Statement struct {
	Subjects  []ResourceDescriptor
	Predicate *SLSA
}

// ResourceDescriptor is an in-toto ResourceDescriptor (subjects,
// resolvedDependencies, byproducts).
type ResourceDescriptor struct {
	Name             string            `json:"name,omitempty"`
	URI              string            `json:"uri,omitempty"`
	Digest           map[string]string `json:"digest,omitempty"`
	Content          string            `json:"content,omitempty"`
	DownloadLocation string            `json:"downloadLocation,omitempty"`
	MediaType        string            `json:"mediaType,omitempty"`
	Annotations      json.RawMessage   `json:"annotations,omitempty"`
}

type wireStatement struct {
	Type          string               `json:"_type"`
	Subject       []ResourceDescriptor `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     json.RawMessage      `json:"predicate"`
}

// ParseStatement parses the envelope payload strictly as an in-toto
// Statement v1 (_type StatementType) whose predicateType is PredicateType,
// with 1 to MaxSubjects subjects each having a digest, and parses the
// predicate (ParsePredicate).
func ParseStatement(payload []byte) (*Statement, error) {
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("%w statement: %d bytes, the limit is %d", ErrMalformed, len(payload), MaxPayloadSize)
	}
	var w wireStatement
	if err := (strictjson.Limits{Size: MaxPayloadSize, Depth: MaxDepth}).Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w statement: %w", ErrMalformed, err)
	}
	if w.Type != StatementType {
		return nil, fmt.Errorf("%w statement: _type %q, want %q", ErrMalformed, w.Type, StatementType)
	}
	if w.PredicateType != PredicateType {
		return nil, fmt.Errorf("%w statement: predicateType %q, want %q", ErrMalformed, w.PredicateType, PredicateType)
	}
	if len(w.Subject) == 0 || len(w.Subject) > MaxSubjects {
		return nil, fmt.Errorf("%w statement: %d subjects, want 1 to %d", ErrMalformed, len(w.Subject), MaxSubjects)
	}
	for i := range w.Subject {
		if err := w.Subject[i].check(fmt.Sprintf("subject[%d]", i)); err != nil {
			return nil, fmt.Errorf("%w statement: %w", ErrMalformed, err)
		}
		if len(w.Subject[i].Digest) == 0 {
			return nil, fmt.Errorf("%w statement: subject[%d] has no digest", ErrMalformed, i)
		}
	}
	p, err := ParsePredicate(w.Predicate)
	if err != nil {
		return nil, err
	}
	return &Statement{Subjects: w.Subject, Predicate: p}, nil
}

// check applies the ResourceDescriptor rules: strings bounded and valid
// UTF-8, at least one of uri, digest and content, digest algorithm names
// and values non-empty, a sha256 digest 64 lowercase hex digits, a
// gitCommit or sha1 digest 40 (or, SHA-256 git, 64) lowercase hex digits.
func (d *ResourceDescriptor) check(field string) error {
	for name, s := range map[string]string{"name": d.Name, "uri": d.URI, "downloadLocation": d.DownloadLocation, "mediaType": d.MediaType} {
		if err := checkString(s); err != nil {
			return fmt.Errorf("%s.%s: %w", field, name, err)
		}
	}
	if len(d.Content) > MaxParametersSize {
		return fmt.Errorf("%s.content: over %d bytes", field, MaxParametersSize)
	}
	if d.URI == "" && len(d.Digest) == 0 && d.Content == "" {
		return fmt.Errorf("%s: needs one of uri, digest and content", field)
	}
	if len(d.Digest) > MaxDigests {
		return fmt.Errorf("%s.digest: %d algorithms, the limit is %d", field, len(d.Digest), MaxDigests)
	}
	for alg, v := range d.Digest {
		if alg == "" || checkString(alg) != nil || v == "" || checkString(v) != nil {
			return fmt.Errorf("%s.digest: empty or invalid algorithm or value", field)
		}
		switch alg {
		case "sha256":
			if !isLowerHex(v, 64) {
				return fmt.Errorf("%s.digest.sha256: want 64 lowercase hex digits, got %q", field, v)
			}
		case "gitCommit", "sha1":
			if !isLowerHex(v, 40) && !isLowerHex(v, 64) {
				return fmt.Errorf("%s.digest.%s: want 40 or 64 lowercase hex digits, got %q", field, alg, v)
			}
		}
	}
	if err := checkObject(d.Annotations); err != nil {
		return fmt.Errorf("%s.annotations: %w", field, err)
	}
	return nil
}

func checkString(s string) error {
	if len(s) > MaxStringLength {
		return fmt.Errorf("%d bytes, the limit is %d", len(s), MaxStringLength)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}

// checkObject accepts an absent value or a JSON object of at most
// MaxParametersSize bytes (duplicate keys and depth were already checked).
func checkObject(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > MaxParametersSize {
		return fmt.Errorf("%d bytes, the limit is %d", len(raw), MaxParametersSize)
	}
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("want a JSON object")
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// HasSubjectSHA256 reports whether a subject has the sha256 digest sum
// (lowercase hex).
func (s *Statement) HasSubjectSHA256(sum string) bool {
	for _, sub := range s.Subjects {
		if sub.Digest["sha256"] == strings.ToLower(sum) && sum != "" {
			return true
		}
	}
	return false
}

func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalStatement encodes st as an in-toto Statement v1 with its SLSA
// provenance v1 predicate, after checking it as ParseStatement would.
func MarshalStatement(st *Statement) ([]byte, error) {
	if st == nil || st.Predicate == nil {
		return nil, fmt.Errorf("%w statement: no predicate", ErrMalformed)
	}
	pred, err := marshalCompact(st.Predicate)
	if err != nil {
		return nil, err
	}
	out, err := marshalCompact(wireStatement{Type: StatementType, Subject: st.Subjects, PredicateType: PredicateType, Predicate: pred})
	if err != nil {
		return nil, err
	}
	if _, err := ParseStatement(out); err != nil {
		return nil, err
	}
	return out, nil
}
