package tlogtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/tlog"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Origin is the origin of the logs NewRepo makes.
const Origin = "airlock.log/00112233445566778899"

// Repo is a test vendor repository with a transparency log in public/log,
// cosigned by two witnesses, and its policy (threshold 2) in a new root
// version.
type Repo struct {
	t      testing.TB
	V      *repotest.Vendor
	Log    *Log
	W1, W2 *Witness
	Policy tlog.Policy
	role   string
}

// NewRepo adds a log to v and requires it in v's root.
func NewRepo(t testing.TB, v *repotest.Vendor) *Repo {
	t.Helper()
	p, err := release.ParseProduct(v.Product)
	if err != nil {
		t.Fatal(err)
	}
	// The harness keeps the log itself (to append, fork, roll back and
	// forge at will): the vendor's publish must not append to it.
	rr, err := repo.OpenWith(v.Repo.Dir(), repo.Options{ExternalLog: true})
	if err != nil {
		t.Fatal(err)
	}
	v.Repo = rr
	w1, w2 := NewWitness(t, "w1.example"), NewWitness(t, "w2.example")
	dir := filepath.Join(v.Repo.Dir(), "public", "log")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := New(t, dir, Origin, w1, w2)
	r := &Repo{t: t, V: v, Log: l, W1: w1, W2: w2, role: p.RoleName()}
	pol := l.Policy(2, w1, w2)
	r.SetPolicy(&pol)
	return r
}

// MetaDir is the repository's public/metadata.
func (r *Repo) MetaDir() string { return filepath.Join(r.V.Repo.Dir(), "public", "metadata") }

// Latest returns the newest "<N>.<role>.json" in public/metadata.
func (r *Repo) Latest(role string) []byte {
	r.t.Helper()
	ents, err := os.ReadDir(r.MetaDir())
	if err != nil {
		r.t.Fatal(err)
	}
	best, name := int64(0), ""
	for _, e := range ents {
		n, rest, ok := strings.Cut(e.Name(), ".")
		v, err := strconv.ParseInt(n, 10, 64)
		if ok && err == nil && rest == role+".json" && v > best {
			best, name = v, e.Name()
		}
	}
	if name == "" {
		r.t.Fatalf("no %s metadata", role)
	}
	b, err := os.ReadFile(filepath.Join(r.MetaDir(), name))
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// SetPolicy writes a new root version whose transparency policy is p (nil:
// none), signed by the vendor's root key: a root rotation.
func (r *Repo) SetPolicy(p *tlog.Policy) {
	r.t.Helper()
	var field any
	if p != nil {
		b, err := json.Marshal(p)
		if err != nil {
			r.t.Fatal(err)
		}
		if err := json.Unmarshal(b, &field); err != nil {
			r.t.Fatal(err)
		}
	}
	var version int64
	raw := repotest.Resign(r.t, r.Latest("root"), func(m *metadata.Metadata[metadata.RootType]) {
		m.Signed.Version++
		version = m.Signed.Version
		if m.Signed.UnrecognizedFields == nil {
			m.Signed.UnrecognizedFields = map[string]any{}
		}
		if p == nil {
			delete(m.Signed.UnrecognizedFields, tlog.PolicyField)
		} else {
			m.Signed.UnrecognizedFields[tlog.PolicyField] = field
		}
	}, r.V.Root)
	for _, name := range []string{strconv.FormatInt(version, 10) + ".root.json", "root.json"} {
		if err := os.WriteFile(filepath.Join(r.MetaDir(), name), raw, 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	if p != nil {
		r.Policy = *p
	}
}

// TargetPath returns the target path of a published version.
func (r *Repo) TargetPath(version string) string {
	r.t.Helper()
	var m struct {
		Signed struct {
			Targets map[string]struct {
				Custom struct {
					Airlock struct {
						Version string `json:"version"`
					} `json:"airlock"`
				} `json:"custom"`
			} `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(r.Latest(r.role), &m); err != nil {
		r.t.Fatal(err)
	}
	for tp, t := range m.Signed.Targets {
		if t.Custom.Airlock.Version == version {
			return tp
		}
	}
	r.t.Fatalf("version %s is not published", version)
	return ""
}

// LogRelease appends the entry of a published version (as the newest
// product role lists it) and indexes it.
func (r *Repo) LogRelease(version string) uint64 {
	r.t.Helper()
	return r.Log.AddRelease(r.Latest(r.role), r.role, r.TargetPath(version))
}
