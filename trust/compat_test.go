package trust

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/trust/trusttest"
)

// This file checks trust's own metadata types against go-tuf's, which
// package trust used before: on metadata the vendor side produces they
// decode to the same values, and on malformed input both refuse.

// vendorFixtures returns metadata files the vendor side (package repo, via
// repotest, and the trusttest simulator) writes: every role type, product
// delegations, releases with custom fields, an environment field in root,
// a rotated root and succinct delegations.
func vendorFixtures(t testing.TB) [][]byte {
	v := repotest.New(t, repotest.Options{Environment: "dev", ProductKeys: 2})
	v.Release("1.0.0", 1, repotest.Image(1, 300), nil)
	v.Release("1.1.0", 2, repotest.Image(2, 500), func(o *repo.ReleaseOptions) { o.Signers = v.ProductSigners })
	var files [][]byte
	dir := filepath.Join(v.Repo.PublicDir(), "metadata")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, data)
	}
	m, _ := repotest.ParseBundle(t, v.Bundle("1.1.0"))
	files = append(files, m.RootChain...)
	files = append(files, m.Timestamp, m.Snapshot, m.Targets)
	for _, d := range m.Delegated {
		files = append(files, d.Data)
	}

	r := trusttest.New(farFuture)
	r.Delegate("targets", metadata.DelegatedRole{Name: "hashed", PathHashPrefixes: []string{"ab", "c"}}, farFuture, trusttest.NewKey())
	r.AddTarget("targets", "fw.img", []byte("x"))
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	files = append(files, r.RootBytes(1), r.File("timestamp.json"), r.File("2.snapshot.json"), r.File("2.targets.json"))
	succinct := metadata.Targets(farFuture)
	succinct.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{},
		SuccinctRoles: &metadata.SuccinctRoles{KeyIDs: []string{}, Threshold: 1, BitLength: 8, NamePrefix: "bin"}}
	files = append(files, trusttest.Sign(succinct.Signed))
	return files
}

// goTUFValue converts a go-tuf value into the trust type with the same
// field names (go-tuf's DelegatedRole is trust's Delegation).
func goTUFValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if !src.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
			goTUFValue(dst.Elem(), src.Elem())
		}
	case reflect.Struct:
		if src.Type() == reflect.TypeFor[time.Time]() {
			dst.Set(src)
			return
		}
		for i := range src.NumField() {
			f := src.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			df := dst.FieldByName(f.Name)
			if !df.IsValid() {
				panic("no field " + f.Name + " in " + dst.Type().String())
			}
			goTUFValue(df, src.Field(i))
		}
	case reflect.Map:
		if !src.IsNil() {
			dst.Set(reflect.MakeMapWithSize(dst.Type(), src.Len()))
			for _, k := range src.MapKeys() {
				v := reflect.New(dst.Type().Elem()).Elem()
				goTUFValue(v, src.MapIndex(k))
				dst.SetMapIndex(k.Convert(dst.Type().Key()), v)
			}
		}
	case reflect.Slice:
		if !src.IsNil() {
			dst.Set(reflect.MakeSlice(dst.Type(), src.Len(), src.Len()))
			for i := range src.Len() {
				goTUFValue(dst.Index(i), src.Index(i))
			}
		}
	case reflect.Interface:
		dst.Set(src)
	default:
		dst.Set(src.Convert(dst.Type()))
	}
}

// compareWithGoTUF parses data as T with go-tuf (plus the checks trust ran
// after go-tuf before) and with trust, and reports a difference in
// acceptance or in the decoded value.
func compareWithGoTUF[T Roles, G metadata.Roles](t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	ours, _, ourErr := parseMetadata[T](data)
	theirs, theirErr := (&metadata.Metadata[G]{}).FromBytes(data)
	if theirErr == nil {
		// What parseMetadata checked after go-tuf's FromBytes: the same
		// checks on go-tuf's value (converted).
		var conv Metadata[T]
		goTUFValue(reflect.ValueOf(&conv).Elem(), reflect.ValueOf(theirs).Elem())
		if _, err := signedPayload(data); err != nil {
			theirErr = err
		} else if err := checkDecoded(&conv); err != nil {
			theirErr = err
		} else if ourErr == nil {
			if d := cmp.Diff(&conv, ours); d != "" {
				t.Fatalf("trust and go-tuf decode %.200q differently (-go-tuf +trust):\n%s", data, d)
			}
		}
	} else if _, err := signedPayload(data); err != nil {
		theirErr = err
	}
	if (ourErr == nil) != (theirErr == nil) {
		t.Fatalf("%.300q: trust error %v, go-tuf error %v", data, ourErr, theirErr)
	}
	return ourErr == nil
}

func TestMetadataDecodesLikeGoTUF(t *testing.T) {
	n := 0
	for _, data := range vendorFixtures(t) {
		switch typ := metadataType(data); typ {
		case RoleRoot:
			n += b2i(compareWithGoTUF[RootType, metadata.RootType](t, data))
		case RoleTimestamp:
			n += b2i(compareWithGoTUF[TimestampType, metadata.TimestampType](t, data))
		case RoleSnapshot:
			n += b2i(compareWithGoTUF[SnapshotType, metadata.SnapshotType](t, data))
		case RoleTargets:
			n += b2i(compareWithGoTUF[TargetsType, metadata.TargetsType](t, data))
		default:
			t.Fatalf("fixture of type %q", typ)
		}
	}
	if n < 15 {
		t.Fatalf("only %d fixtures accepted", n)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func metadataType(data []byte) string {
	var m struct {
		Signed struct {
			Type string `json:"_type"`
		} `json:"signed"`
	}
	json.Unmarshal(data, &m)
	return m.Signed.Type
}

// Malformed variants of valid metadata that trust refused before (through
// go-tuf's FromBytes or its own checks) and still refuses.
func TestMetadataRefusesWhatGoTUFRefused(t *testing.T) {
	r := trusttest.New(farFuture)
	root := string(r.RootBytes(1))
	r.AddTarget("targets", "fw.img", []byte("x"))
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	targets := string(r.File("2.targets.json"))
	ts := string(r.File("timestamp.json"))
	for _, tt := range []struct {
		name, base, old, new string
	}{
		{"odd-length signature", root, `"sig":"`, `"sig":"a`},
		{"non-hex signature", root, `"sig":"`, `"sig":"zz`},
		{"null signature", root, `"sig":"`, `"sig":null,"x":"`},
		{"version as string", root, `"version":1`, `"version":"1"`},
		{"version as float", root, `"version":1`, `"version":1.0`},
		{"roles not an object", root, `"roles":{`, `"roles":[],"x":{`},
		{"expires not RFC 3339", root, `"expires":"`, `"expires":"x`},
		{"threshold as string", root, `"threshold":1`, `"threshold":"1"`},
		{"keys not an object", root, `"keys":{`, `"keys":[],"x":{`},
		{"wrong _type", root, `"_type":"root"`, `"_type":"targets"`},
		{"no _type", root, `"_type":"root",`, ``},
		{"target without hashes", targets, `"hashes":{`, `"hashes":{},"x":{`},
		{"target length as string", targets, `"length":1`, `"length":"1"`},
		{"custom as raw number", targets, `"length":1`, `"length":1,"custom":1.5`},
		{"meta not an object", ts, `"meta":{`, `"meta":[],"x":{`},
		{"duplicate signature key ID", root, `"signatures":[`, `"signatures":[{"keyid":"k","sig":"00"},{"keyid":"k","sig":"00"},`},
		{"signatures not an array", root, `"signatures":[`, `"signatures":{},"x":[`},
		{"trailing garbage", root, `}}`, `}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(strings.Replace(tt.base, tt.old, tt.new, 1))
			if bytes.Equal(data, []byte(tt.base)) {
				t.Fatalf("mutation %q not found", tt.old)
			}
			var accepted bool
			switch metadataType([]byte(tt.base)) {
			case RoleRoot:
				accepted = compareWithGoTUF[RootType, metadata.RootType](t, data)
			case RoleTimestamp:
				accepted = compareWithGoTUF[TimestampType, metadata.TimestampType](t, data)
			case RoleTargets:
				accepted = compareWithGoTUF[TargetsType, metadata.TargetsType](t, data)
			}
			if accepted {
				t.Fatalf("accepted %s", data)
			}
		})
	}
}

// An attacker cannot change what verified metadata says through the
// unsigned top-level object: encoding/json would decode "Signed" (or
// "SIGNED", "ſigned") into the same field as "signed", after the
// signatures were checked over "signed". trust matches names exactly.
func TestCaseVariantKeyCannotOverrideSignedMetadata(t *testing.T) {
	r := trusttest.New(farFuture)
	root := r.RootBytes(1)
	for _, key := range []string{"Signed", "SIGNED", "ſigned"} {
		evil := append(bytes.TrimSuffix(bytes.TrimSpace(bytes.Clone(root)), []byte("}")), `,"`+key+`":{"version":99}}`...)
		md, _, err := parseMetadata[RootType](evil)
		if err != nil {
			t.Fatalf("%s: %v", key, err) // an unknown top-level field is accepted (spec 4.2)
		}
		if md.Signed.Version != 1 {
			t.Fatalf("%q overrode the signed metadata: version %d", key, md.Signed.Version)
		}
		if _, ok := md.UnrecognizedFields[key]; !ok {
			t.Fatalf("%q not kept as an unrecognized field", key)
		}
		// The attack against the go-tuf decoding trust used before.
		if old, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(evil); err != nil || old.Signed.Version != 99 {
			t.Logf("%q: go-tuf decodes version %v, %v", key, old, err)
		}
	}
}

// hasFoldableKey reports whether some object key in v could match a field
// name case-insensitively but not exactly (where trust and go-tuf differ
// on purpose).
func hasFoldableKey(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if k != strings.ToLower(k) || strings.ContainsFunc(k, func(r rune) bool { return r >= 0x80 }) || hasFoldableKey(e) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if hasFoldableKey(e) {
				return true
			}
		}
	}
	return false
}

// FuzzMetadataDecodesLikeGoTUF: on any input without case-variant keys,
// trust accepts exactly what go-tuf plus trust's checks accepted, with the
// same decoded value.
func FuzzMetadataDecodesLikeGoTUF(f *testing.F) {
	for _, data := range vendorFixtures(f) {
		f.Add(data)
	}
	f.Add([]byte(`{"signed":{"_type":"targets","spec_version":"1.0","version":1,"expires":"2030-01-01T00:00:00Z","targets":{"a":{"length":1,"hashes":{"sha256":"00"}}},"delegations":{"keys":{},"succinct_roles":{"keyids":[],"threshold":1,"bit_length":0,"name_prefix":"b"}}},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := decodeStrict(data); err != nil || hasFoldableKey(v) {
			return
		}
		compareWithGoTUF[RootType, metadata.RootType](t, data)
		compareWithGoTUF[TimestampType, metadata.TimestampType](t, data)
		compareWithGoTUF[SnapshotType, metadata.SnapshotType](t, data)
		compareWithGoTUF[TargetsType, metadata.TargetsType](t, data)
	})
}
