package provenance

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/keys"
)

const (
	testBuilder   = "https://github.com/acme/fw/.github/workflows/release.yml@refs/heads/main"
	testBuildType = "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"
	testSource    = "git+https://github.com/acme/fw@refs/heads/main"
	testCommit    = "0123456789abcdef0123456789abcdef01234567"
)

func genKey(t testing.TB, typ keys.Type) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(typ)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := keys.MarshalPublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testStatement(image []byte, builder, source string) *Statement {
	sum := sha256.Sum256(image)
	return &Statement{
		Subjects: []ResourceDescriptor{{Name: "firmware.img", Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		Predicate: &SLSA{
			BuildDefinition: BuildDefinition{
				BuildType:            testBuildType,
				ExternalParameters:   json.RawMessage(`{"workflow":{"ref":"refs/heads/main","repository":"https://github.com/acme/fw","path":".github/workflows/release.yml"}}`),
				ResolvedDependencies: []ResourceDescriptor{{URI: source, Digest: map[string]string{"gitCommit": testCommit}}},
			},
			RunDetails: RunDetails{Builder: Builder{ID: builder}, Metadata: &BuildMetadata{InvocationID: "run-42", StartedOn: "2026-12-08T00:00:00Z"}},
		},
	}
}

func envelope(t testing.TB, st *Statement, signers ...crypto.Signer) []byte {
	t.Helper()
	payload, err := MarshalStatement(st)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Sign(payload, signers...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCheck(t *testing.T) {
	image := []byte("firmware image bytes")
	sum := sha256.Sum256(image)
	imageSHA := hex.EncodeToString(sum[:])
	ed, ec, other := genKey(t, keys.Ed25519), genKey(t, keys.ECDSAP256), genKey(t, keys.Ed25519)
	pol := &Policy{Builders: []string{testBuilder}, Sources: []string{"https://github.com/acme/fw"}, BuildTypes: []string{testBuildType},
		Signers: []string{pemOf(t, ed.Public()), pemOf(t, ec.Public())}, Threshold: 2}
	good := envelope(t, testStatement(image, testBuilder, testSource), ed, ec)

	a, err := Check(good, "acme/router-x1", imageSHA, pol)
	if err != nil {
		t.Fatal(err)
	}
	edID, _ := keys.KeyID(ed.Public())
	ecID, _ := keys.KeyID(ec.Public())
	if len(a.Signers) != 2 || !strings.Contains(strings.Join(a.Signers, ","), edID) || !strings.Contains(strings.Join(a.Signers, ","), ecID) {
		t.Errorf("signers = %v, want %s and %s", a.Signers, edID, ecID)
	}
	if a.BuilderID() != testBuilder || a.BuildType() != testBuildType || a.Source.Repo != "https://github.com/acme/fw" || a.Source.Commit != testCommit {
		t.Errorf("attestation = builder %q type %q source %+v", a.BuilderID(), a.BuildType(), a.Source)
	}
	if want, n := Digest(good); a.SHA256 != want || a.Length != n {
		t.Errorf("digest %s/%d, want %s/%d", a.SHA256, a.Length, want, n)
	}

	// A bad signature: the ECDSA signature is replaced by another key's.
	forged := envelope(t, testStatement(image, testBuilder, testSource), ed, other)
	// A payload changed after signing.
	tampered := func() []byte {
		e, err := ParseEnvelope(good)
		if err != nil {
			t.Fatal(err)
		}
		e.Payload = []byte(strings.Replace(string(e.Payload), "run-42", "run-43", 1))
		b, _ := e.Marshal()
		return b
	}()
	for _, tc := range []struct {
		name   string
		data   []byte
		image  string
		want   error
		substr string
	}{
		{"bad signature", forged, imageSHA, ErrSignature, "provenance: envelope signatures: 1 of the 2 policy keys signed validly, need 2"},
		{"payload changed after signing", tampered, imageSHA, ErrSignature, "0 of the 2 policy keys"},
		{"disallowed builder", envelope(t, testStatement(image, "https://evil.example/builder", testSource), ed, ec), imageSHA, ErrPolicy,
			`provenance: builder "https://evil.example/builder" is not allowed for acme/router-x1`},
		{"disallowed source", envelope(t, testStatement(image, testBuilder, "git+https://github.com/evil/fw@refs/heads/main"), ed, ec), imageSHA, ErrPolicy,
			`provenance: source repository "https://github.com/evil/fw" is not allowed for acme/router-x1`},
		{"subject digest mismatch", good, strings.Repeat("ab", 32), ErrSubject, "provenance: subject digest: no subject has the release image's sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(tc.data, "acme/router-x1", tc.image, pol)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrProvenance) || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.substr)
			}
		})
	}

	// A disallowed build type.
	bt := testStatement(image, testBuilder, testSource)
	bt.Predicate.BuildDefinition.BuildType = "https://example.com/manual"
	if _, err := Check(envelope(t, bt, ed, ec), "acme/router-x1", imageSHA, pol); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), `build type "https://example.com/manual" is not allowed`) {
		t.Fatalf("build type: %v", err)
	}
	// No source at all.
	ns := testStatement(image, testBuilder, testSource)
	ns.Predicate.BuildDefinition.ResolvedDependencies = nil
	if _, err := Check(envelope(t, ns, ed, ec), "acme/router-x1", imageSHA, pol); !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "names no source") {
		t.Fatalf("no source: %v", err)
	}
	// The source from externalParameters.source.
	ext := testStatement(image, testBuilder, testSource)
	ext.Predicate.BuildDefinition.ResolvedDependencies = nil
	ext.Predicate.BuildDefinition.ExternalParameters = json.RawMessage(`{"source":{"uri":"https://github.com/acme/fw.git","digest":{"gitCommit":"` + testCommit + `"}}}`)
	if a, err := Check(envelope(t, ext, ed, ec), "acme/router-x1", imageSHA, pol); err != nil || a.Source.Commit != testCommit {
		t.Fatalf("externalParameters.source: %v", err)
	}
	// The same key signing twice counts once.
	twice := &Policy{Builders: pol.Builders, Sources: pol.Sources, Signers: pol.Signers, Threshold: 2}
	if _, err := Check(envelope(t, testStatement(image, testBuilder, testSource), ed, ed), "acme/router-x1", imageSHA, twice); !errors.Is(err, ErrSignature) {
		t.Fatalf("one key signing twice met a threshold of 2: %v", err)
	}
	// Without a policy, only the format and the subject are checked.
	if a, err := Check(forged, "acme/router-x1", imageSHA, nil); err != nil || len(a.Signers) != 0 {
		t.Fatalf("no policy: %v %v", a, err)
	}
}

func TestPolicyValidate(t *testing.T) {
	k := genKey(t, keys.Ed25519)
	ok := Policy{Builders: []string{"b"}, Sources: []string{"https://x/y"}, Signers: []string{pemOf(t, k.Public())}, Threshold: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(p *Policy){
		"no builder":        func(p *Policy) { p.Builders = nil },
		"no source":         func(p *Policy) { p.Sources = nil },
		"no signer":         func(p *Policy) { p.Signers = nil; p.Threshold = 0 },
		"threshold 0":       func(p *Policy) { p.Threshold = 0 },
		"threshold above n": func(p *Policy) { p.Threshold = 2 },
		"duplicate key":     func(p *Policy) { p.Signers = append(p.Signers, p.Signers[0]); p.Threshold = 2 },
		"not a key":         func(p *Policy) { p.Signers = []string{"nope"} },
		"duplicate builder": func(p *Policy) { p.Builders = []string{"b", "b"} },
		"empty build type":  func(p *Policy) { p.BuildTypes = []string{""} },
	} {
		p := ok
		mod(&p)
		if err := p.Validate(); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: err = %v, want ErrPolicy", name, err)
		}
	}
}

func TestNormalizeRepo(t *testing.T) {
	for in, want := range map[string]string{
		"git+https://github.com/acme/fw@refs/heads/main": "https://github.com/acme/fw",
		"https://GitHub.com/acme/fw.git":                 "https://github.com/acme/fw",
		"https://github.com/acme/fw/":                    "https://github.com/acme/fw",
		"git+ssh://git@example.com/acme/fw.git@v1.2":     "ssh://git@example.com/acme/fw",
		"https://github.com/acme/fw-evil":                "https://github.com/acme/fw-evil",
	} {
		if got := NormalizeRepo(in); got != want {
			t.Errorf("NormalizeRepo(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestParseEnvelopeStrict: one encoding only, no unknown fields, limits.
func TestParseEnvelopeStrict(t *testing.T) {
	k := genKey(t, keys.Ed25519)
	good := envelope(t, testStatement([]byte("x"), testBuilder, testSource), k)
	if _, err := ParseEnvelope(good); err != nil {
		t.Fatal(err)
	}
	var w map[string]any
	json.Unmarshal(good, &w)
	payload := w["payload"].(string)
	urlSafe := strings.NewReplacer("+", "-", "/", "_").Replace(payload)
	for name, bad := range map[string]string{
		"unknown field":      strings.Replace(string(good), `"payloadType"`, `"extra":1,"payloadType"`, 1),
		"duplicate key":      strings.Replace(string(good), `"payloadType"`, `"payload":"","payloadType"`, 1),
		"wrong payload type": strings.Replace(string(good), PayloadType, "application/json", 1),
		"unpadded base64":    strings.Replace(string(good), payload, strings.TrimRight(payload, "="), 1),
		"trailing data":      string(good) + "{}",
		"no signatures":      `{"payloadType":"` + PayloadType + `","payload":"` + payload + `","signatures":[]}`,
		"null signatures":    `{"payloadType":"` + PayloadType + `","payload":"` + payload + `","signatures":null}`,
		"too large":          `{"payloadType":"` + PayloadType + `","payload":"` + base64.StdEncoding.EncodeToString(make([]byte, MaxEnvelopeSize)) + `","signatures":[{"sig":"AA=="}]}`,
	} {
		if _, err := ParseEnvelope([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if urlSafe != payload {
		if _, err := ParseEnvelope([]byte(strings.Replace(string(good), payload, urlSafe, 1))); !errors.Is(err, ErrMalformed) {
			t.Errorf("URL-safe base64 accepted: %v", err)
		}
	}
	// Every prefix of a valid envelope is refused.
	for i := 0; i < len(good); i += 7 {
		if _, err := ParseEnvelope(good[:i]); err == nil {
			t.Fatalf("prefix of %d bytes accepted", i)
		}
	}
}

func TestParseStatementStrict(t *testing.T) {
	st := testStatement([]byte("x"), testBuilder, testSource)
	good, err := MarshalStatement(st)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"statement v0.1":    strings.Replace(string(good), StatementType, "https://in-toto.io/Statement/v0.1", 1),
		"slsa v0.2":         strings.Replace(string(good), PredicateType, "https://slsa.dev/provenance/v0.2", 1),
		"unknown field":     strings.Replace(string(good), `"buildType"`, `"buildTipe":"x","buildType"`, 1),
		"no builder id":     strings.Replace(string(good), `"id":"`+testBuilder+`"`, `"id":""`, 1),
		"bad commit":        strings.Replace(string(good), testCommit, "XYZ", 1),
		"bad sha256":        strings.Replace(string(good), `"sha256":"`, `"sha256":"A`, 1),
		"params not object": strings.Replace(string(good), `"externalParameters":{`, `"externalParameters":[{`, 1),
		"bad time":          strings.Replace(string(good), "2026-12-08T00:00:00Z", "yesterday", 1),
	} {
		if bad == string(good) {
			t.Fatalf("%s: edit did not apply", name)
		}
		if _, err := ParseStatement([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	k, _ := keys.Generate(keys.Ed25519)
	f.Add(envelope(f, testStatement([]byte("x"), testBuilder, testSource), k))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvelope(data)
		if err != nil {
			return
		}
		// What parses re-encodes to an envelope that parses to the same.
		out, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ParseEnvelope(out)
		if err != nil || string(e2.Payload) != string(e.Payload) || len(e2.Signatures) != len(e.Signatures) {
			t.Fatalf("re-encoded envelope differs: %v", err)
		}
	})
}

func FuzzParseStatement(f *testing.F) {
	good, _ := MarshalStatement(testStatement([]byte("x"), testBuilder, testSource))
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatement(data)
		if err != nil {
			return
		}
		out, err := MarshalStatement(st)
		if err != nil {
			t.Fatalf("a parsed statement does not re-encode: %v", err)
		}
		if _, err := ParseStatement(out); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParsePredicate(f *testing.F) {
	st := testStatement([]byte("x"), testBuilder, testSource)
	good, _ := json.Marshal(st.Predicate)
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePredicate(data)
		if err != nil {
			return
		}
		if p.BuildDefinition.BuildType == "" || p.RunDetails.Builder.ID == "" {
			t.Fatal("a predicate without build type or builder parsed")
		}
		p.Source() // must not panic
	})
}

func FuzzPolicy(f *testing.F) {
	f.Add([]byte(`{"builders":["b"],"sources":["s"],"signers":["x"],"threshold":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Policy
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if p.Validate() == nil && (p.Threshold < 1 || p.Threshold > len(p.Signers)) {
			t.Fatal("an invalid threshold validated")
		}
	})
}
