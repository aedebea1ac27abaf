package tlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/airlockfw/airlock/internal/strictjson"
)

// PolicyField is the field of the signed root metadata that holds the
// transparency policy. A root without it does not require transparency; a
// root with it requires every release to be logged and witnessed.
const PolicyField = "x-airlock-transparency"

// Limits of a policy.
const (
	MaxWitnesses   = 16
	MaxPolicySize  = 16 << 10
	maxKeyLength   = 512
	maxWitnessName = 128
)

// ErrPolicy is wrapped by every policy parse error.
var ErrPolicy = errors.New("invalid transparency policy")

// Policy is what a device requires of the log: the log's note verifier
// key (its name is the checkpoint origin) and Threshold valid cosignatures
// of the listed witnesses.
type Policy struct {
	// Log is the log's note verifier key: "<origin>+<hash>+<base64 key>".
	Log       string    `json:"log"`
	Witnesses []Witness `json:"witnesses"`
	Threshold int       `json:"threshold"`
}

// Witness is one witness: its name (the cosignature key's name), its
// cosignature/v1 verifier key, and the URL publishers send checkpoints to
// (C2SP tlog-witness). Devices use only Name and Key.
type Witness struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	URL  string `json:"url"`
}

// Origin returns the checkpoint origin the policy's log key names.
func (p Policy) Origin() string {
	name, _, _ := strings.Cut(p.Log, "+")
	return name
}

// PolicyOf returns the policy in the signed fields of a root that a JSON
// decoder kept as unrecognized (go-tuf's RootType.UnrecognizedFields, on
// the vendor side), and whether the root has one.
func PolicyOf(fields map[string]any) (Policy, bool, error) {
	v, ok := fields[PolicyField]
	if !ok {
		return Policy{}, false, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return Policy{}, false, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	p, err := ParsePolicy(raw)
	if err != nil {
		return Policy{}, false, err
	}
	return p, true, nil
}

// ParsePolicy parses the policy field's JSON value strictly.
func ParsePolicy(data []byte) (Policy, error) {
	var p Policy
	if err := (strictjson.Limits{Size: MaxPolicySize, Depth: 4}).Unmarshal(data, &p); err != nil {
		return Policy{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return p, p.Check()
}

// Check reports whether p is well formed: a log key, 0..MaxWitnesses
// witnesses with distinct names and keys, 1 <= threshold <= n (0 only
// without witnesses). Keys are checked for shape here; the verifiers that
// use them check them fully.
func (p Policy) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrPolicy, fmt.Sprintf(format, args...))
	}
	if err := checkKey(p.Log); err != nil {
		return bad("log key: %v", err)
	}
	if len(p.Witnesses) > MaxWitnesses {
		return bad("%d witnesses, at most %d", len(p.Witnesses), MaxWitnesses)
	}
	names, keys := map[string]bool{}, map[string]bool{}
	for i, w := range p.Witnesses {
		if w.Name == "" || len(w.Name) > maxWitnessName || strings.ContainsAny(w.Name, " +\n") {
			return bad("witness %d: name %q: empty, too long, or holds a space, '+' or newline", i, w.Name)
		}
		if err := checkKey(w.Key); err != nil {
			return bad("witness %q: key: %v", w.Name, err)
		}
		if name, _, _ := strings.Cut(w.Key, "+"); name != w.Name {
			return bad("witness %q: key is named %q", w.Name, name)
		}
		if names[w.Name] || keys[w.Key] {
			return bad("witness %q listed twice", w.Name)
		}
		names[w.Name], keys[w.Key] = true, true
		if w.URL != "" {
			u, err := url.Parse(w.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return bad("witness %q: url %q is not an http(s) URL", w.Name, w.URL)
			}
		}
	}
	switch {
	case len(p.Witnesses) == 0 && p.Threshold != 0:
		return bad("threshold %d without witnesses", p.Threshold)
	case len(p.Witnesses) > 0 && (p.Threshold < 1 || p.Threshold > len(p.Witnesses)):
		return bad("threshold %d outside 1..%d", p.Threshold, len(p.Witnesses))
	}
	return nil
}

// checkKey checks the shape of a note verifier key: name+hash+key, the
// name non-empty without spaces, the hash 8 hex digits.
func checkKey(k string) error {
	if k == "" || len(k) > maxKeyLength {
		return fmt.Errorf("empty or longer than %d bytes", maxKeyLength)
	}
	parts := strings.SplitN(k, "+", 3) // the base64 key may hold "+"
	if len(parts) != 3 || parts[0] == "" || strings.ContainsAny(parts[0], " \n") || !isHex(parts[1], 8) || parts[2] == "" {
		return fmt.Errorf("%q is not a note verifier key (name+hash+key)", k)
	}
	return nil
}
