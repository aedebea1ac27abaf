// Package trusttest builds real, signed TUF repositories in memory with the
// go-tuf metadata API and serves them over HTTP, for tests of the trust
// client and of programs built on it (like net/http/httptest).
//
// Threat model: none; this is test support. Keys are generated in memory and
// never persisted. Do not use it outside tests.
package trusttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/canonjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key is an ed25519 signing key with its TUF public key and key ID.
type Key struct {
	Public *metadata.Key
	ID     string
	priv   ed25519.PrivateKey
}

// NewKey generates a key.
func NewKey() *Key {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k := &metadata.Key{Type: "ed25519", Scheme: "ed25519", Value: metadata.KeyVal{PublicKey: hex.EncodeToString(pub)}}
	id, err := k.ID()
	if err != nil {
		panic(err)
	}
	return &Key{Public: k, ID: id, priv: priv}
}

// SetPrivate makes k sign with from's private key (for keys registered under
// several key IDs).
func SetPrivate(k, from *Key) { k.priv = from.priv }

// Repo is a TUF repository. Exported metadata may be modified directly; the
// changes are served after SignRole, PublishRoot or UpdateSnapshot.
type Repo struct {
	Root      *metadata.Metadata[metadata.RootType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Targets   map[string]*metadata.Metadata[metadata.TargetsType] // "targets" and delegated roles
	// Signers are the keys each role's metadata is signed with.
	Signers map[string][]*Key

	mu       sync.Mutex
	roots    map[int64][]byte
	files    map[string][]byte // metadata by served name: "<role>.json", "<v>.<role>.json"
	artifact map[string][]byte // targets by served path
	requests []string
}

// New returns a repository with one fresh key per top-level role, consistent
// snapshots on, every role at version 1 expiring at expires, all published.
func New(expires time.Time) *Repo {
	r := &Repo{
		Root:      metadata.Root(expires),
		Timestamp: metadata.Timestamp(expires),
		Snapshot:  metadata.Snapshot(expires),
		Targets:   map[string]*metadata.Metadata[metadata.TargetsType]{"targets": metadata.Targets(expires)},
		Signers:   map[string][]*Key{},
		roots:     map[int64][]byte{},
		files:     map[string][]byte{},
		artifact:  map[string][]byte{},
	}
	for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
		k := NewKey()
		if err := r.Root.Signed.AddKey(k.Public, role); err != nil {
			panic(err)
		}
		r.Signers[role] = []*Key{k}
	}
	r.PublishRoot()
	r.SignRole("targets")
	r.SignRole("snapshot")
	r.SignRole("timestamp")
	return r
}

// Canonical returns the canonical JSON of v (the bytes TUF signs), with the
// encoder the vendor side signs with and package trust verifies with.
func Canonical(v any) []byte {
	b, err := canonjson.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Sign returns the metadata document {signed, signatures} with signed
// signed by keys.
func Sign(signed any, keys ...*Key) []byte {
	payload := Canonical(signed)
	sigs := []metadata.Signature{}
	for _, k := range keys {
		sigs = append(sigs, metadata.Signature{KeyID: k.ID, Signature: ed25519.Sign(k.priv, payload)})
	}
	b, err := json.Marshal(map[string]any{"signed": signed, "signatures": sigs})
	if err != nil {
		panic(err)
	}
	return b
}

// PublishRoot signs the current root with Signers["root"] plus extra keys
// (e.g. the previous root keys during a rotation) and serves it as
// "<version>.root.json". It returns the signed bytes.
func (r *Repo) PublishRoot(extra ...*Key) []byte {
	b := Sign(r.Root.Signed, append(append([]*Key{}, r.Signers["root"]...), extra...)...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roots[r.Root.Signed.Version] = b
	return b
}

// SetRoot serves data as root version v (e.g. to replay an old root).
func (r *Repo) SetRoot(v int64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roots[v] = data
}

// RootBytes returns the published root of a version (nil if none).
func (r *Repo) RootBytes(version int64) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.roots[version]
}

// SignRole signs role (timestamp, snapshot, targets or a delegated role)
// with Signers[role] and serves it as "<role>.json" and "<v>.<role>.json".
func (r *Repo) SignRole(role string) []byte {
	var signed any
	var version int64
	switch role {
	case "timestamp":
		signed, version = r.Timestamp.Signed, r.Timestamp.Signed.Version
	case "snapshot":
		signed, version = r.Snapshot.Signed, r.Snapshot.Signed.Version
	default:
		md, ok := r.Targets[role]
		if !ok {
			panic("trusttest: unknown role " + role)
		}
		signed, version = md.Signed, md.Signed.Version
	}
	b := Sign(signed, r.Signers[role]...)
	r.SetFile(role+".json", b)
	r.SetFile(strconv.FormatInt(version, 10)+"."+role+".json", b)
	return b
}

// SetFile serves data under a metadata file name (unescaped role name),
// e.g. to replay old metadata in an attack.
func (r *Repo) SetFile(name string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[name] = data
}

// File returns the metadata served under name.
func (r *Repo) File(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[name]
}

// UpdateSnapshot pins the current version of every targets role in a new
// snapshot version and pins that in a new timestamp version, signing both.
func (r *Repo) UpdateSnapshot() {
	for name, md := range r.Targets {
		r.Snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	r.Snapshot.Signed.Version++
	r.SignRole("snapshot")
	r.UpdateTimestamp()
}

// UpdateTimestamp pins the current snapshot version in a new timestamp version.
func (r *Repo) UpdateTimestamp() {
	r.Timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.Snapshot.Signed.Version)
	r.Timestamp.Signed.Version++
	r.SignRole("timestamp")
}

// BumpTargets increments a targets role's version and signs it.
func (r *Repo) BumpTargets(role string) {
	r.Targets[role].Signed.Version++
	r.SignRole(role)
}

// AddTarget adds content as targetPath to role's metadata (not re-signed)
// and serves it, under "<dir>/<sha256>.<base>" when consistent snapshots
// are on and under targetPath otherwise.
func (r *Repo) AddTarget(role, targetPath string, content []byte) *metadata.TargetFiles {
	tf, err := metadata.TargetFile().FromBytes(targetPath, content, "sha256", "sha512")
	if err != nil {
		panic(err)
	}
	r.Targets[role].Signed.Targets[targetPath] = tf
	r.SetTarget(targetPath, content)
	return tf
}

// SetTarget serves content for targetPath (both plain and hash-prefixed
// names, the prefix being the sha256 listed in metadata if any).
func (r *Repo) SetTarget(targetPath string, content []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.artifact[targetPath] = content
	for _, md := range r.Targets {
		if tf, ok := md.Signed.Targets[targetPath]; ok {
			dir, base := "", targetPath
			if i := strings.LastIndexByte(targetPath, '/'); i >= 0 {
				dir, base = targetPath[:i+1], targetPath[i+1:]
			}
			r.artifact[dir+hex.EncodeToString(tf.Hashes["sha256"])+"."+base] = content
		}
	}
}

// Delegate makes delegator delegate role (name, paths, terminating) to keys
// with threshold 1 (unless role.Threshold is set), creating the role's
// metadata if needed and setting Signers[role.Name] to keys if unset. Nothing
// is re-signed.
func (r *Repo) Delegate(delegator string, role metadata.DelegatedRole, expires time.Time, keys ...*Key) {
	d := r.Targets[delegator]
	if d.Signed.Delegations == nil {
		d.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	if role.Threshold == 0 {
		role.Threshold = 1
	}
	for _, k := range keys {
		d.Signed.Delegations.Keys[k.ID] = k.Public
		role.KeyIDs = append(role.KeyIDs, k.ID)
	}
	d.Signed.Delegations.Roles = append(d.Signed.Delegations.Roles, role)
	if _, ok := r.Targets[role.Name]; !ok {
		r.Targets[role.Name] = metadata.Targets(expires)
	}
	if _, ok := r.Signers[role.Name]; !ok {
		r.Signers[role.Name] = keys
	}
}

// ServeHTTP serves "/metadata/<file>" and "/targets/<path>" (404 otherwise).
// Versioned metadata names other than root are served only when the root
// has consistent snapshots on; timestamp is never versioned.
func (r *Repo) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests = append(r.requests, req.URL.Path)
	var data []byte
	var ok bool
	switch {
	case strings.HasPrefix(req.URL.Path, "/metadata/"):
		name := strings.TrimPrefix(req.URL.Path, "/metadata/")
		ver, rest, versioned := strings.Cut(name, ".")
		v, err := strconv.ParseInt(ver, 10, 64)
		versioned = versioned && err == nil
		switch {
		case versioned && rest == "root.json":
			data, ok = r.roots[v]
		case versioned && !r.Root.Signed.ConsistentSnapshot, name == "root.json":
		default:
			data, ok = r.files[name]
		}
	case strings.HasPrefix(req.URL.Path, "/targets/"):
		data, ok = r.artifact[strings.TrimPrefix(req.URL.Path, "/targets/")]
	}
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Write(data)
}

// Requests returns the paths served so far (decoded URL paths).
func (r *Repo) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

// ResetRequests forgets the served paths.
func (r *Repo) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// Serve starts a loopback HTTP server for r, closed when the test ends. It
// returns the metadata and targets base URLs.
func (r *Repo) Serve(t testing.TB) (metadataURL, targetsURL string) {
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL + "/metadata/", srv.URL + "/targets/"
}

// SHA256 returns the hex SHA-256 of data.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
