package repo

import (
	"crypto"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/airlockfw/airlock/keys"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

func genKey(t testing.TB, typ keys.Type) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(typ)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyID(t testing.TB, s crypto.Signer) string {
	t.Helper()
	id, err := keys.KeyID(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fixture is a repository with 2-of-3 root keys and a product
// acme/router-x1 delegated 2-of-3.
type fixture struct {
	r                         *Repo
	dir                       string
	root                      []crypto.Signer
	targets, snapshot, tstamp crypto.Signer
	product                   []crypto.Signer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: filepath.Join(t.TempDir(), "repo")}
	f.root = []crypto.Signer{genKey(t, keys.Ed25519), genKey(t, keys.ECDSAP384), genKey(t, keys.ECDSAP256)}
	f.targets = genKey(t, keys.Ed25519)
	f.snapshot = genKey(t, keys.Ed25519)
	f.tstamp = genKey(t, keys.ECDSAP256)
	f.product = []crypto.Signer{genKey(t, keys.Ed25519), genKey(t, keys.ECDSAP384), genKey(t, keys.Ed25519)}
	r, err := Init(f.dir, InitOptions{
		RootKeys:      []crypto.PublicKey{f.root[0].Public(), f.root[1].Public(), f.root[2].Public()},
		RootThreshold: 2,
		RootSigners:   f.root[:2],
		Targets:       f.targets, Snapshot: f.snapshot, Timestamp: f.tstamp,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	var pubs []crypto.PublicKey
	for _, p := range f.product {
		pubs = append(pubs, p.Public())
	}
	if err := r.Delegate("acme/router-x1", pubs, 2, f.targets); err != nil {
		t.Fatal(err)
	}
	f.publish(t)
	return f
}

func (f *fixture) publish(t testing.TB) *PublishResult {
	t.Helper()
	res, err := f.r.Publish(f.snapshot, f.tstamp)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// writeImage writes a pseudo-random image of n bytes.
func writeImage(t testing.TB, n int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "firmware.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// Half random, half zeros: compressible but not trivially.
	if _, err := io.CopyN(out, rand.Reader, n/2); err != nil {
		t.Fatal(err)
	}
	if err := out.Truncate(n); err != nil {
		t.Fatal(err)
	}
	out.Close()
	return p
}

func (f *fixture) addRelease(t testing.TB, version, compress string, signers ...crypto.Signer) *ReleaseInfo {
	t.Helper()
	info, err := f.r.AddRelease(ReleaseOptions{
		Product: "acme/router-x1", ImagePath: writeImage(t, 300_000), Version: version, SecurityVersion: 1,
		Models: []string{"x1"}, Compress: compress, Signers: signers,
	})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// client is a go-tuf updater over REPO/public served by httptest.
type client struct {
	srv *httptest.Server
	cfg *config.UpdaterConfig
	dir string
}

func newClient(t testing.TB, publicDir string, trustedRoot []byte) *client {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(publicDir)))
	t.Cleanup(srv.Close)
	cfg, err := config.New(srv.URL+"/metadata", trustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = srv.URL + "/targets"
	dir := t.TempDir()
	cfg.LocalMetadataDir = filepath.Join(dir, "metadata")
	cfg.LocalTargetsDir = filepath.Join(dir, "targets")
	if err := cfg.EnsurePathsExist(); err != nil {
		t.Fatal(err)
	}
	return &client{srv: srv, cfg: cfg, dir: dir}
}

// refresh runs a fresh updater (keeping the local trusted metadata).
func (c *client) refresh(t testing.TB) (*updater.Updater, error) {
	t.Helper()
	up, err := updater.New(c.cfg)
	if err != nil {
		return nil, err
	}
	return up, up.Refresh()
}

func readRoot(t testing.TB, dir string, v int) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "public", "metadata", itoa(v)+".root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func itoa(v int) string { return strconv.Itoa(v) }

func loadRootMD(t testing.TB, data []byte) *metadata.Metadata[metadata.RootType] {
	t.Helper()
	md, err := parseMD[metadata.RootType](data)
	if err != nil {
		t.Fatal(err)
	}
	return md
}
