package repo

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/release"
	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestInitRootIsThresholdSigned(t *testing.T) {
	f := newFixture(t)
	root := loadRootMD(t, readRoot(t, f.dir, 1))
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		t.Fatalf("root v1 does not verify against itself: %v", err)
	}
	if got := root.Signed.Roles[metadata.ROOT].Threshold; got != 2 {
		t.Errorf("root threshold = %d, want 2", got)
	}
	if !root.Signed.ConsistentSnapshot {
		t.Error("consistent snapshots are off")
	}
}

func TestInitRefuses(t *testing.T) {
	r1, r2, tk := genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519)
	sk, ts := genKey(t, keys.Ed25519), genKey(t, keys.Ed25519)
	base := func() InitOptions {
		return InitOptions{RootKeys: []crypto.PublicKey{r1.Public(), r2.Public()}, RootThreshold: 2,
			RootSigners: []crypto.Signer{r1, r2}, Targets: tk, Snapshot: sk, Timestamp: ts}
	}
	tests := []struct {
		name   string
		mutate func(dir string, o *InitOptions)
		want   error
	}{
		{"root signers below threshold", func(_ string, o *InitOptions) { o.RootSigners = o.RootSigners[:1] }, ErrBelowThreshold},
		{"signer that is not a root key", func(_ string, o *InitOptions) { o.RootSigners = []crypto.Signer{r1, tk} }, ErrUnauthorizedKey},
		{"threshold above n", func(_ string, o *InitOptions) { o.RootThreshold = 3 }, ErrInvalidOptions},
		{"online key reused as timestamp and snapshot", func(_ string, o *InitOptions) { o.Timestamp = sk }, ErrInvalidOptions},
		{"root key reused as targets key", func(_ string, o *InitOptions) { o.Targets = r1 }, ErrInvalidOptions},
		{"online key path inside repo", func(dir string, o *InitOptions) { o.OnlineTimestampKey = filepath.Join(dir, "keys", "ts.pem") }, ErrKeyInsideRepo},
		{"non-empty directory", func(dir string, _ *InitOptions) {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
		}, ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "repo")
			o := base()
			tt.mutate(dir, &o)
			_, err := Init(dir, o)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Init error = %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
				t.Error("a refused Init left a configuration behind")
			}
		})
	}
}

func TestCheckKeyPathSeesThroughSymlinksAndDotDot(t *testing.T) {
	top := t.TempDir()
	repoDir := filepath.Join(top, "repo")
	os.MkdirAll(filepath.Join(repoDir, "keys"), 0o755)
	os.Symlink(filepath.Join(repoDir, "keys"), filepath.Join(top, "link"))
	tests := []struct {
		name, path string
		inside     bool
	}{
		{"direct", filepath.Join(repoDir, "k.pem"), true},
		{"through symlink", filepath.Join(top, "link", "k.pem"), true},
		{"dot-dot back in", filepath.Join(top, "other", "..", "repo", "k.pem"), true},
		{"repo dir itself", repoDir, true},
		{"sibling with common prefix", filepath.Join(top, "repo-keys", "k.pem"), false},
		{"outside", filepath.Join(top, "k.pem"), false},
		{"pkcs11 uri", "pkcs11:token=x;object=y", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKeyPath(repoDir, tt.path)
			if got := errors.Is(err, ErrKeyInsideRepo); got != tt.inside {
				t.Fatalf("CheckKeyPath(%q) = %v, want inside=%v", tt.path, err, tt.inside)
			}
		})
	}
}

// TestThresholdReleaseIsStandardTUF walks the 2-of-3 approval flow (one
// approver on the repository machine, one on another machine through the
// carried pending file) and checks go-tuf's updater accepts the result, for
// raw and zstd payloads.
func TestThresholdReleaseIsStandardTUF(t *testing.T) {
	f := newFixture(t)
	img := writeImage(t, 3<<20)
	var infos []*ReleaseInfo
	for i, c := range []string{CompressNone, CompressZstd} {
		info, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: []string{"1.0.0", "1.1.0"}[i],
			SecurityVersion: 3, Models: []string{"x1", "x1-pro"}, HWRev: ">=2", Compress: c, Signers: f.product[:1]})
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	// Publishing now must fail and say how many signatures are missing.
	_, err := f.r.Publish(f.snapshot, f.tstamp)
	var te *ThresholdError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "release acme/router-x1 1.0.0, acme/router-x1 1.1.0 needs 2 signatures, has 1 (1 missing)") {
		t.Fatalf("Publish below threshold: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "public", "metadata", "1.acme.router-x1.json")); err == nil {
		t.Fatal("a refused publish wrote the product role")
	}

	// The second approver works on a copy on another machine.
	carried := filepath.Join(t.TempDir(), "acme.router-x1.json")
	copyFile(t, filepath.Join(f.dir, "staging", "acme.router-x1.json"), carried)
	if _, err := SignPendingFile(carried, f.product[1], ""); err != nil {
		t.Fatal(err)
	}
	role, have, need, err := f.r.ImportPending(carried)
	if err != nil || role != "acme.router-x1" || have != 2 || need != 2 {
		t.Fatalf("ImportPending = %q %d/%d, %v", role, have, need, err)
	}
	res := f.publish(t)
	if len(res.Released) != 2 {
		t.Fatalf("released %v", res.Released)
	}

	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	up, err := c.refresh(t)
	if err != nil {
		t.Fatalf("go-tuf refresh: %v", err)
	}
	for i, info := range infos {
		tf, err := up.GetTargetInfo(info.TargetPath)
		if err != nil {
			t.Fatalf("GetTargetInfo(%s): %v", info.TargetPath, err)
		}
		dst := filepath.Join(t.TempDir(), "dl")
		if _, _, err := up.DownloadTarget(tf, dst, ""); err != nil {
			t.Fatalf("DownloadTarget: %v", err)
		}
		meta, err := release.ParseCustom(*tf.Custom)
		if err != nil {
			t.Fatal(err)
		}
		if err := release.CheckTargetPath(meta, info.TargetPath); err != nil {
			t.Fatal(err)
		}
		raw := fileSHA256(t, img)
		if hex.EncodeToString(meta.Installed.SHA256[:]) != raw {
			t.Errorf("installed digest %x, want sha256 of the raw image %s", meta.Installed.SHA256, raw)
		}
		if got := fileSHA256(t, dst); got != hex.EncodeToString(tf.Hashes["sha256"]) {
			t.Errorf("target hash does not match the downloaded file")
		}
		if i == 1 {
			if meta.Install.Compression != release.CompressionZstd || !strings.HasSuffix(info.TargetPath, ".img.zst") {
				t.Fatalf("zstd release: compression %q path %q", meta.Install.Compression, info.TargetPath)
			}
			in, _ := os.Open(dst)
			// Schema 2: the frames after the tree and the frame table are
			// one zstd stream of the image.
			if _, err := in.Seek(meta.PayloadDataOffset(), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			dec, err := zstd.NewReader(in)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, dec)
			dec.Close()
			in.Close()
			if err != nil || n != meta.Installed.Length || hex.EncodeToString(h.Sum(nil)) != raw {
				t.Fatalf("decompressed payload: %d bytes, err %v", n, err)
			}
			if tf.Length >= meta.Installed.Length {
				t.Errorf("compressed length %d not below raw %d", tf.Length, meta.Installed.Length)
			}
		}
	}
	checkPublicTree(t, f.dir)
}

func TestImportPendingRejectsAlteredContent(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "1.0.0", "", f.product[0])
	carried := filepath.Join(t.TempDir(), "p.json")
	copyFile(t, filepath.Join(f.dir, "staging", "acme.router-x1.json"), carried)
	data, _ := os.ReadFile(carried)
	md, err := parseMD[metadata.TargetsType](data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tf := range md.Signed.Targets {
		tf.Length++ // the attacker points the approver at other content
	}
	out, _ := md.ToBytes(true)
	os.WriteFile(carried, out, 0o644)
	SignPendingFile(carried, f.product[1], "")
	if _, _, _, err := f.r.ImportPending(carried); !errors.Is(err, ErrMismatch) {
		t.Fatalf("ImportPending of altered content = %v, want ErrMismatch", err)
	}
	// A signature by a key outside the role is not merged.
	copyFile(t, filepath.Join(f.dir, "staging", "acme.router-x1.json"), carried)
	SignPendingFile(carried, f.targets, "")
	if _, have, _, err := f.r.ImportPending(carried); err != nil || have != 1 {
		t.Fatalf("ImportPending with a foreign signature: have %d, %v", have, err)
	}
}

func TestAddReleaseRefuses(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "1.2.0", "", f.product[0], f.product[1])
	f.publish(t)
	img := writeImage(t, 1000)
	tests := []struct {
		name string
		opts ReleaseOptions
		want error
	}{
		{"product without delegation", ReleaseOptions{Product: "acme/other", Version: "2.0.0"}, ErrNoDelegation},
		{"key not in the product role", ReleaseOptions{Version: "2.0.0", Signers: []crypto.Signer{f.targets}}, ErrUnauthorizedKey},
		{"duplicate version", ReleaseOptions{Version: "1.2.0"}, ErrDuplicate},
		{"older version", ReleaseOptions{Version: "1.1.9"}, ErrDowngrade},
		{"bad version", ReleaseOptions{Version: "v1"}, ErrInvalidOptions},
		{"no models", ReleaseOptions{Version: "2.0.0", Models: []string{}}, ErrInvalidOptions},
		{"unknown compression", ReleaseOptions{Version: "2.0.0", Compress: "gzip"}, ErrInvalidOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if o.Product == "" {
				o.Product = "acme/router-x1"
			}
			if o.Signers == nil {
				o.Signers = f.product[:1]
			}
			if o.Models == nil {
				o.Models = []string{"x1"}
			}
			o.ImagePath = img
			if _, err := f.r.AddRelease(o); !errors.Is(err, tt.want) {
				t.Fatalf("AddRelease = %v, want %v", err, tt.want)
			}
		})
	}
	// A signed downgrade override is accepted and recorded.
	info, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: "1.1.9", Models: []string{"x1"},
		AllowDowngrade: true, Signers: f.product[:1]})
	if err != nil || !info.Metadata.AllowDowngrade {
		t.Fatalf("downgrade with AllowDowngrade: %v", err)
	}
	// Nothing was left behind by refused adds: only the 1.1.9 payload is staged.
	var staged []string
	filepath.WalkDir(filepath.Join(f.dir, "staging", "targets"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			staged = append(staged, p)
		}
		return nil
	})
	if len(staged) != 1 || !strings.Contains(staged[0], "1.1.9") {
		t.Fatalf("staged payloads: %v", staged)
	}
}

func TestTimestampRefreshIsSeenByClients(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	up, err := c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	before := up.GetTrustedMetadataSet().Timestamp.Signed.Version
	if _, err := f.r.Timestamp(f.snapshot); !errors.Is(err, ErrUnauthorizedKey) {
		t.Fatalf("Timestamp with the snapshot key = %v, want ErrUnauthorizedKey", err)
	}
	v, err := f.r.Timestamp(f.tstamp)
	if err != nil {
		t.Fatal(err)
	}
	up, err = c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	if got := up.GetTrustedMetadataSet().Timestamp.Signed.Version; got != v || got != before+1 {
		t.Fatalf("client timestamp version %d, want %d (was %d)", got, v, before)
	}
}

// TestRootRotationChain rotates root twice, each version signed by a
// threshold of the previous and of its own keys, and checks that a client
// pinned to root v1 follows the chain.
func TestRootRotationChain(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	if _, err := c.refresh(t); err != nil {
		t.Fatal(err)
	}
	// v2: replace root key 0 by a new key; threshold stays 2.
	n1 := genKey(t, keys.RSA3072)
	res, err := f.r.Rotate(RotateOptions{Role: "root", Add: []crypto.PublicKey{n1.Public()}, Remove: []string{keyID(t, f.root[0])},
		OldSigners: []crypto.Signer{f.root[0], f.root[1]}})
	if err != nil {
		t.Fatal(err)
	}
	// Old threshold met (0 and 1), new threshold not (only 1 is a new key).
	if !strings.Contains(res.Missing, "by its own root keys") {
		t.Fatalf("Missing = %q", res.Missing)
	}
	if _, err := f.r.Publish(f.snapshot, f.tstamp); !errors.Is(err, ErrBelowThreshold) {
		t.Fatalf("Publish of under-signed root = %v", err)
	}
	if _, err := f.r.Rotate(RotateOptions{Role: "root", OldSigners: f.root}); !errors.Is(err, ErrPendingRoot) {
		t.Fatalf("second rotation while one is staged = %v", err)
	}
	// The new key holder signs on another machine.
	carried := filepath.Join(t.TempDir(), "root.json")
	copyFile(t, filepath.Join(f.dir, "staging", "root.json"), carried)
	if _, err := SignPendingFile(carried, n1, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.r.ImportPending(carried); err != nil {
		t.Fatal(err)
	}
	f.publish(t)

	// v3: raise to 2-of-4 with another key, signed by v2's keys (1, 2, n1).
	n2 := genKey(t, keys.Ed25519)
	res, err = f.r.Rotate(RotateOptions{Role: "root", Add: []crypto.PublicKey{n2.Public()},
		OldSigners: []crypto.Signer{f.root[1], n1}, NewSigners: []crypto.Signer{n2}})
	if err != nil || res.Missing != "" {
		t.Fatalf("rotate to v3: %v, missing %q", err, res.Missing)
	}
	f.publish(t)

	v1, v2, v3 := loadRootMD(t, readRoot(t, f.dir, 1)), loadRootMD(t, readRoot(t, f.dir, 2)), loadRootMD(t, readRoot(t, f.dir, 3))
	for _, step := range []struct {
		name      string
		old, next *metadata.Metadata[metadata.RootType]
	}{{"v2 by v1", v1, v2}, {"v2 by v2", v2, v2}, {"v3 by v2", v2, v3}, {"v3 by v3", v3, v3}} {
		if err := step.old.VerifyDelegate(metadata.ROOT, step.next); err != nil {
			t.Errorf("%s: %v", step.name, err)
		}
	}
	// Every root version records the repository's environment.
	for i, r := range []*metadata.Metadata[metadata.RootType]{v1, v2, v3} {
		if env := r.Signed.UnrecognizedFields[RootEnvironmentField]; env != f.r.Environment() || env != "dev" {
			t.Errorf("root v%d environment = %v, want %q", i+1, env, f.r.Environment())
		}
	}
	// A root signed only by removed key 0 and key 1 would not verify under v2.
	if err := v1.VerifyDelegate(metadata.ROOT, v3); err == nil {
		t.Error("v3 verifies with v1's keys; it should need v2's")
	}
	up, err := c.refresh(t)
	if err != nil {
		t.Fatalf("client following the root chain: %v", err)
	}
	if got := up.GetTrustedMetadataSet().Root.Signed.Version; got != 3 {
		t.Fatalf("client root version %d, want 3", got)
	}
	latest, _ := os.ReadFile(filepath.Join(f.dir, "public", "metadata", "root.json"))
	if !bytes.Equal(latest, readRoot(t, f.dir, 3)) {
		t.Error("root.json is not the latest root")
	}
}

func TestRotateTimestampKey(t *testing.T) {
	f := newFixture(t)
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	newTS := genKey(t, keys.Ed25519)
	if _, err := f.r.Rotate(RotateOptions{Role: "timestamp", Add: []crypto.PublicKey{newTS.Public()}, Remove: []string{keyID(t, f.tstamp)},
		OldSigners: f.root[:2]}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Publish(f.snapshot, f.tstamp); !errors.Is(err, ErrUnauthorizedKey) {
		t.Fatalf("publish with the rotated-out timestamp key = %v", err)
	}
	if _, err := f.r.Publish(f.snapshot, newTS); err != nil {
		t.Fatal(err)
	}
	if _, err := c.refresh(t); err != nil {
		t.Fatalf("client after timestamp key rotation: %v", err)
	}
}

// TestRevokedProductKeyStopsCounting: after revoking a product key, a release
// approved by it and one other key no longer reaches 2-of-3 and go-tuf
// refuses it, until a remaining key re-signs.
func TestRevokedProductKeyStopsCounting(t *testing.T) {
	f := newFixture(t)
	info := f.addRelease(t, "1.0.0", "", f.product[0], f.product[1])
	f.publish(t)
	if err := f.r.Revoke("acme/router-x1", keyID(t, f.product[0]), f.targets); err != nil {
		t.Fatal(err)
	}
	res := f.publish(t)
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "1 of 2 valid signatures") {
		t.Fatalf("warnings %q", res.Warnings)
	}
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	up, err := c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetTargetInfo(info.TargetPath); err == nil {
		t.Fatal("the release still verifies after its approver's key was revoked")
	}
	// The revoked key may no longer sign.
	if _, _, err := f.r.SignPending("acme/router-x1", "1.0.0", f.product[0], ""); !errors.Is(err, ErrUnauthorizedKey) {
		t.Fatalf("revoked key signing = %v", err)
	}
	for _, s := range f.product[1:] {
		if _, _, err := f.r.SignPending("acme/router-x1", "1.0.0", s, ""); err != nil {
			t.Fatal(err)
		}
	}
	f.publish(t)
	up, err = c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetTargetInfo(info.TargetPath); err != nil {
		t.Fatalf("re-signed release: %v", err)
	}
}

func TestRotateProductKeys(t *testing.T) {
	f := newFixture(t)
	info := f.addRelease(t, "1.0.0", "zstd", f.product[0], f.product[1])
	f.publish(t)
	nk := genKey(t, keys.ECDSAP256)
	res, err := f.r.Rotate(RotateOptions{Role: "acme/router-x1", Add: []crypto.PublicKey{nk.Public()}, Remove: []string{keyID(t, f.product[0])},
		OldSigners: []crypto.Signer{f.targets}, NewSigners: []crypto.Signer{nk, f.product[2]}})
	if err != nil || res.Missing != "" {
		t.Fatalf("Rotate: %v, missing %q", err, res.Missing)
	}
	f.publish(t)
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	up, err := c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetTargetInfo(info.TargetPath); err != nil {
		t.Fatalf("release after product key rotation: %v", err)
	}
}

func TestCreateBundleRoundTrip(t *testing.T) {
	f := newFixture(t)
	info := f.addRelease(t, "2.0.0", "zstd", f.product[0], f.product[2])
	f.publish(t)
	// A root rotation so the bundle carries a chain.
	f.r.Rotate(RotateOptions{Role: "root", Threshold: 1, OldSigners: f.root[:2]})
	f.publish(t)

	var buf bytes.Buffer
	if err := f.r.CreateBundle(&buf, "acme/router-x1", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	br, err := bundle.NewReader(&buf, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m := br.Metadata()
	if m.TargetPath != info.TargetPath || m.PayloadLength != info.Length || len(m.RootChain) != 1 || len(m.Delegated) != 1 || m.Delegated[0].Name != "acme.router-x1" {
		t.Fatalf("bundle metadata: path %q len %d roots %d delegated %v", m.TargetPath, m.PayloadLength, len(m.RootChain), len(m.Delegated))
	}
	if !bytes.Equal(m.RootChain[0], readRoot(t, f.dir, 2)) {
		t.Error("root chain entry is not 2.root.json")
	}
	h := sha256.New()
	if _, err := io.Copy(h, br.Payload()); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h.Sum(nil)) != info.SHA256 {
		t.Error("bundle payload differs from the published target")
	}
	// Verify the carried metadata like a device would, from root v1.
	root := loadRootMD(t, readRoot(t, f.dir, 1))
	v2 := loadRootMD(t, m.RootChain[0])
	if err := root.VerifyDelegate("root", v2); err != nil {
		t.Fatal(err)
	}
	targets, _ := parseMD[metadata.TargetsType](m.Targets)
	role, _ := parseMD[metadata.TargetsType](m.Delegated[0].Data)
	if err := v2.VerifyDelegate("targets", targets); err != nil {
		t.Fatal(err)
	}
	if err := targets.VerifyDelegate("acme.router-x1", role); err != nil {
		t.Fatal(err)
	}
	if err := f.r.CreateBundle(io.Discard, "acme/router-x1", "9.9.9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bundle of an unknown version = %v", err)
	}
}

func TestStatusAndReleases(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "1.0.0", "", f.product[0], f.product[1])
	f.publish(t)
	f.addRelease(t, "1.1.0", "", f.product[2])
	rels, err := f.r.Releases("")
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 2 || !rels[0].Published || rels[1].Published || rels[1].Signatures != 1 || rels[1].Threshold != 2 {
		t.Fatalf("releases %+v", rels)
	}
	st, err := f.r.Status()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range st.Roles {
		names = append(names, r.Name)
		if r.Name == "acme.router-x1" && (r.Version != 1 || r.StagedVersion != 2 || r.StagedSignatures != 1) {
			t.Errorf("product role status %+v", r)
		}
	}
	if strings.Join(names, " ") != "root targets acme.router-x1 snapshot timestamp" || len(st.Expired) != 0 {
		t.Fatalf("roles %v expired %v", names, st.Expired)
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t testing.TB, p string) string {
	t.Helper()
	in, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	h := sha256.New()
	io.Copy(h, in)
	return hex.EncodeToString(h.Sum(nil))
}

// checkPublicTree asserts the served directory holds only metadata and
// target files, no private keys, no temp files, no staging, sane modes.
func checkPublicTree(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(dir, "public"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		if d.IsDir() {
			if fi.Mode().Perm() != DirMode {
				t.Errorf("%s: mode %v", p, fi.Mode())
			}
			return nil
		}
		if fi.Mode().Perm() != FileMode || !fi.Mode().IsRegular() {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		if strings.HasPrefix(d.Name(), ".tmp") || strings.Contains(p, "staging") {
			t.Errorf("%s should not be served", p)
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s contains private key material", p)
		}
		return nil
	})
}

func TestRotateTargetsKey(t *testing.T) {
	f := newFixture(t)
	info := f.addRelease(t, "1.0.0", "", f.product[0], f.product[1])
	f.publish(t)
	nt := genKey(t, keys.ECDSAP256)
	if _, err := f.r.Rotate(RotateOptions{Role: "targets", Add: []crypto.PublicKey{nt.Public()}, Remove: []string{keyID(t, f.targets)},
		OldSigners: f.root[:2], NewSigners: []crypto.Signer{nt}}); err != nil {
		t.Fatal(err)
	}
	f.publish(t)
	// The old targets key can no longer delegate.
	if err := f.r.Delegate("acme/evil", []crypto.PublicKey{f.targets.Public()}, 1, f.targets); !errors.Is(err, ErrUnauthorizedKey) {
		t.Fatalf("delegate with the old targets key = %v", err)
	}
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	up, err := c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetTargetInfo(info.TargetPath); err != nil {
		t.Fatalf("release after targets key rotation: %v", err)
	}
}
