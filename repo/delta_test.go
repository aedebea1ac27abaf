package repo

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/release"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// firmwarePair returns an image of n bytes (random blocks and zero runs,
// like a filesystem) and its next build: some blocks rewritten, a few bytes
// patched in others, a run of blocks moved, and grown by grow bytes.
func firmwarePair(seed int64, n, grow int) (old, new []byte) {
	rng := rand.New(rand.NewSource(seed))
	old = make([]byte, n)
	for off := 0; off < n; off += 4096 {
		if rng.Intn(4) != 0 {
			rng.Read(old[off:min(off+4096, n)])
		}
	}
	new = append(bytes.Clone(old), make([]byte, grow)...)
	rng.Read(new[n:])
	for i := 0; i < n/4096/10; i++ { // 10% of the blocks patched here and there
		off := rng.Intn(n - 64)
		rng.Read(new[off : off+16])
	}
	if n >= 64<<10 { // a rebuilt file elsewhere
		copy(new[n/2:n/2+32<<10], old[4096:4096+32<<10])
	}
	return old, new
}

func writeBytes(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "firmware.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) add(t testing.TB, version string, img []byte, compress string, from ...string) *ReleaseInfo {
	t.Helper()
	info, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: writeBytes(t, img), Version: version,
		SecurityVersion: 1, Models: []string{"x1"}, Compress: compress, DeltaFrom: from, Signers: f.product[:2]})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// slotOf is what a device holds in its slot after installing release
// info: the image, zero-padded to a block, then the tree from its payload.
func (f *fixture) slotOf(t testing.TB, info *ReleaseInfo, img []byte) []byte {
	t.Helper()
	m := info.Metadata
	pl, err := os.ReadFile(f.payloadFile(t, info))
	if err != nil {
		t.Fatal(err)
	}
	slot := make([]byte, m.SlotLength())
	copy(slot, img)
	copy(slot[m.HashOffset():], pl[:m.Index.TreeLength])
	return slot
}

func (f *fixture) payloadFile(t testing.TB, info *ReleaseInfo) string {
	t.Helper()
	md, _, err := f.r.currentRole("acme.router-x1")
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := f.r.payloadPath(info.TargetPath, md.Signed.Targets[info.TargetPath])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// applyDeltaFile does what a device does with a delta bundle's payload,
// with package delta alone: it checks each stream's header against the
// signed delta, rebuilds the new tree from the old slot's tree, then the
// new image from the old slot's image, into a new slot, and returns it.
func applyDeltaFile(t testing.TB, file []byte, d *release.Delta, old, target *release.Metadata, oldSlot []byte) []byte {
	t.Helper()
	if int64(len(file)) != d.Length() {
		t.Fatalf("delta file is %d bytes, the signed delta %d", len(file), d.Length())
	}
	slot := make([]byte, target.SlotLength())
	streams := []struct {
		signed   release.DeltaStream
		data     []byte
		old      []byte
		dst      []byte
		newLen   int64
		whatNote string
	}{
		{d.Tree, file[:d.Tree.Length], oldSlot[old.HashOffset():old.SlotLength()], slot[target.HashOffset():], target.Index.TreeLength, "tree"},
		{d.Data, file[d.Tree.Length:], oldSlot[:old.Installed.Length], slot[:target.HashOffset()], target.Installed.Length, "data"},
	}
	for _, s := range streams {
		r, err := delta.NewReader(bytes.NewReader(s.data))
		if err != nil {
			t.Fatalf("%s stream: %v", s.whatNote, err)
		}
		if r.HeaderSHA256() != s.signed.HeaderSHA256 || r.HeaderLength() != s.signed.HeaderLength || r.StreamLength() != s.signed.Length {
			t.Fatalf("%s stream: header sha256 %x, %d bytes, stream %d bytes; signed %x, %d, %d", s.whatNote,
				r.HeaderSHA256(), r.HeaderLength(), r.StreamLength(), s.signed.HeaderSHA256, s.signed.HeaderLength, s.signed.Length)
		}
		if r.NewLength() != s.newLen {
			t.Fatalf("%s stream rebuilds %d bytes, want %d", s.whatNote, r.NewLength(), s.newLen)
		}
		err = r.Apply(context.Background(), bytes.NewReader(s.old), func(first int64, blocks []byte) error {
			off := first * delta.BlockSize
			n := min(int64(len(blocks)), s.newLen-off)
			copy(s.dst[off:off+n], blocks[:n])
			return nil
		})
		if err != nil {
			t.Fatalf("%s stream: %v", s.whatNote, err)
		}
	}
	return slot
}

// checkSlot runs the device's boot check on a rebuilt slot: the tree
// against the signed root, every block against the tree.
func checkSlot(t testing.TB, slot []byte, m *release.Metadata) {
	t.Helper()
	e := payload.Indexed{InstalledLength: m.Installed.Length, Salt: m.Index.Salt, Root: m.Index.Root[:], TreeLength: m.Index.TreeLength}
	if err := payload.CheckSlot(bytes.NewReader(slot), e, false); err != nil {
		t.Fatalf("the slot rebuilt from the delta fails the boot check: %v", err)
	}
}

// TestReleaseAddWithDeltaFromRebuildsTheRelease: release add --delta-from
// signs a delta whose streams, applied as a device applies them to the
// base's slot, rebuild exactly the new release's tree and image, for
// uncompressed and compressed bases and targets, one-block images (an empty
// tree) included.
func TestReleaseAddWithDeltaFromRebuildsTheRelease(t *testing.T) {
	for _, tc := range []struct {
		name          string
		base, target  string
		size, grow    int
		wantTreeEmpty bool
	}{
		{"raw to raw", "", "", 700 << 10, 5000, false},
		{"zstd to zstd", "zstd", "zstd", 700 << 10, 5000, false},
		{"raw to zstd", "", "zstd", 300 << 10, 0, false},
		{"zstd to raw", "zstd", "", 300 << 10, 12345, false},
		{"one block to one block", "", "zstd", 3000, 1000, true},
		{"one block to many", "zstd", "", 4096, 200 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			oldImg, newImg := firmwarePair(int64(tc.size), tc.size, tc.grow)
			base := f.add(t, "1.0.0", oldImg, tc.base)
			f.publish(t)
			info := f.add(t, "1.1.0", newImg, tc.target, "1.0.0")
			if len(info.Deltas) != 1 || len(info.Metadata.Deltas) != 1 {
				t.Fatalf("%d deltas made, %d signed; want 1", len(info.Deltas), len(info.Metadata.Deltas))
			}
			d := info.Metadata.DeltaFrom("1.0.0")
			if d == nil {
				t.Fatal("no signed delta from 1.0.0")
			}
			if (info.Metadata.Index.TreeLength == 0) != tc.wantTreeEmpty {
				t.Fatalf("tree of %d bytes", info.Metadata.Index.TreeLength)
			}
			// What is signed is what the staged metadata holds.
			md, err := f.r.stagedTargetsRole("acme.router-x1")
			if err != nil {
				t.Fatal(err)
			}
			signed, err := release.ParseCustom(*md.Signed.Targets[info.TargetPath].Custom)
			if err != nil {
				t.Fatal(err)
			}
			if sd := signed.DeltaFrom("1.0.0"); sd == nil || *sd != *d {
				t.Fatalf("staged metadata signs %+v, want %+v", sd, d)
			}
			path := filepath.Join(f.dir, "deltas", "acme", "router-x1", "1.1.0", "from-1.0.0.delta")
			if info.Deltas[0].Path != path {
				t.Errorf("delta file %s, want %s", info.Deltas[0].Path, path)
			}
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			slot := applyDeltaFile(t, file, d, base.Metadata, info.Metadata, f.slotOf(t, base, oldImg))
			if want := f.slotOf(t, info, newImg); !bytes.Equal(slot, want) {
				t.Fatal("the delta does not rebuild the new slot")
			}
			checkSlot(t, slot, info.Metadata)
			noTempFiles(t, f.dir)
			t.Logf("%s: image %d -> %d bytes, payload %d bytes, delta %d bytes (tree %d, data %d)", tc.name,
				len(oldImg), len(newImg), info.Length, d.Length(), d.Tree.Length, d.Data.Length)
		})
	}
}

// noTempFiles fails if a temp file (a decoded image, an unfinished delta)
// is left anywhere in the repository.
func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
}

// deltaFiles lists the files under REPO/deltas.
func deltaFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, DeltasDir), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestReleaseAddWithTwoDeltaBases: one release signs deltas from a
// published and a staged release, each rebuilding it from its own base.
func TestReleaseAddWithTwoDeltaBases(t *testing.T) {
	f := newFixture(t)
	v1, v2 := firmwarePair(1, 1<<20, 8192)
	_, v3 := firmwarePair(2, len(v2), 0)
	copy(v3, v2[:len(v2)-100<<10]) // v3 shares most of v2, little of v1
	r1 := f.add(t, "1.0.0", v1, "zstd")
	f.publish(t)
	r2 := f.add(t, "1.1.0", v2, "zstd")
	r3 := f.add(t, "1.2.0", v3, "zstd", "1.0.0", "1.1.0") // 1.1.0 is only staged
	if got := len(r3.Metadata.Deltas); got != 2 {
		t.Fatalf("%d deltas signed, want 2", got)
	}
	for _, b := range []struct {
		info *ReleaseInfo
		img  []byte
	}{{r1, v1}, {r2, v2}} {
		d := r3.Metadata.DeltaFrom(b.info.Version)
		file, err := os.ReadFile(f.r.deltaPath(r3.Metadata.Product, "1.2.0", b.info.Version))
		if err != nil {
			t.Fatal(err)
		}
		slot := applyDeltaFile(t, file, d, b.info.Metadata, r3.Metadata, f.slotOf(t, b.info, b.img))
		checkSlot(t, slot, r3.Metadata)
		t.Logf("1.2.0 from %s: %d bytes (payload %d)", b.info.Version, d.Length(), r3.Length)
	}
	if a, b := r3.Metadata.DeltaFrom("1.0.0").Length(), r3.Metadata.DeltaFrom("1.1.0").Length(); b >= a {
		t.Errorf("the delta from the closer release (%d bytes) is not smaller than from the older one (%d bytes)", b, a)
	}
	f.r.SignPending("acme/router-x1", "", f.product[2], "")
	f.publish(t)
}

// TestDeltaRefusals: every refusal leaves nothing staged and no delta file
// behind.
func TestDeltaRefusals(t *testing.T) {
	v1, v2 := firmwarePair(3, 200<<10, 0)
	setup := func(t *testing.T) *fixture {
		f := newFixture(t)
		f.add(t, "1.0.0", v1, "")
		if _, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: writeBytes(t, v1), Version: "0.9.0",
			SecurityVersion: 1, Models: []string{"x1"}, Schema: release.SchemaV1, AllowDowngrade: true, Signers: f.product[:2]}); err != nil {
			t.Fatal(err)
		}
		f.publish(t)
		return f
	}
	for _, tc := range []struct {
		name    string
		opts    func(*ReleaseOptions)
		prepare func(t *testing.T, f *fixture)
		want    error
	}{
		{"schema 1 base", func(o *ReleaseOptions) { o.DeltaFrom = []string{"0.9.0"} }, nil, ErrNoIndex},
		{"schema 1 target", func(o *ReleaseOptions) { o.DeltaFrom = []string{"1.0.0"}; o.Schema = release.SchemaV1 }, nil, ErrNoIndex},
		{"unknown base", func(o *ReleaseOptions) { o.DeltaFrom = []string{"0.5.0"} }, nil, ErrNotFound},
		{"the release itself", func(o *ReleaseOptions) { o.DeltaFrom = []string{"2.0.0"} }, nil, ErrInvalidOptions},
		{"a base twice", func(o *ReleaseOptions) { o.DeltaFrom = []string{"1.0.0", "1.0.0"} }, nil, ErrInvalidOptions},
		{"not a version", func(o *ReleaseOptions) { o.DeltaFrom = []string{"latest"} }, nil, ErrInvalidOptions},
		{"too many bases", func(o *ReleaseOptions) {
			for i := range release.MaxDeltas + 1 {
				o.DeltaFrom = append(o.DeltaFrom, "1.0."+itoa(i+1))
			}
		}, nil, ErrInvalidOptions},
		{"damaged second base after the first delta was made", func(o *ReleaseOptions) { o.DeltaFrom = []string{"1.0.0", "1.1.0"} },
			func(t *testing.T, f *fixture) {
				info := f.add(t, "1.1.0", v2, "zstd")
				f.publish(t)
				p := f.payloadFile(t, info)
				b, _ := os.ReadFile(p)
				b[len(b)-10] ^= 1
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}, ErrMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			if tc.prepare != nil {
				tc.prepare(t, f)
			}
			staged := snapshotDir(t, filepath.Join(f.dir, StagingDir))
			o := ReleaseOptions{Product: "acme/router-x1", ImagePath: writeBytes(t, v2), Version: "2.0.0",
				SecurityVersion: 1, Models: []string{"x1"}, Signers: f.product[:2]}
			tc.opts(&o)
			_, err := f.r.AddRelease(o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("release add = %v, want %v", err, tc.want)
			}
			t.Log(err)
			if got := snapshotDir(t, filepath.Join(f.dir, StagingDir)); got != staged {
				t.Errorf("staging changed:\n%s\nwas\n%s", got, staged)
			}
			if files := deltaFiles(t, f.dir); len(files) != 0 {
				t.Errorf("delta files left behind: %v", files)
			}
			noTempFiles(t, f.dir)
		})
	}
}

// snapshotDir lists the files under dir with their sizes.
func snapshotDir(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			fi, _ := e.Info()
			b.WriteString(p + " " + itoa(int(fi.Size())) + "\n")
		}
		return nil
	})
	return b.String()
}

// TestAddDeltaIsStagedUntilTheThresholdSigns: a delta for a published
// release is a change of the product role like any other: staged with one
// signature of two, published once a second key signs, then carried by a
// delta bundle whose payload is the delta file.
func TestAddDeltaIsStagedUntilTheThresholdSigns(t *testing.T) {
	f := newFixture(t)
	v1, v2 := firmwarePair(4, 400<<10, 4096)
	r1 := f.add(t, "1.0.0", v1, "zstd")
	r2 := f.add(t, "1.1.0", v2, "")
	f.publish(t)

	if _, err := f.r.CreateBundleWith(io.Discard, BundleOptions{Product: "acme/router-x1", Version: "1.1.0", DeltaFrom: "1.0.0"}); !errors.Is(err, ErrNoDelta) {
		t.Fatalf("delta bundle before a delta is signed = %v, want ErrNoDelta", err)
	}
	d, rel, err := f.r.AddDelta("acme/router-x1", "1.1.0", "1.0.0", f.product[0])
	if err != nil {
		t.Fatal(err)
	}
	if rel.Signatures != 1 || rel.Threshold != 2 {
		t.Fatalf("signatures %d/%d, want 1/2", rel.Signatures, rel.Threshold)
	}
	if _, err := f.r.Publish(f.snapshot, f.tstamp); !errors.As(err, new(*ThresholdError)) {
		t.Fatalf("publish with 1 of 2 signatures = %v, want a ThresholdError", err)
	}
	// Still not published: no delta bundle yet.
	if _, err := f.r.CreateBundleWith(io.Discard, BundleOptions{Product: "acme/router-x1", Version: "1.1.0", DeltaFrom: "1.0.0"}); !errors.Is(err, ErrNoDelta) {
		t.Fatalf("delta bundle of a staged delta = %v, want ErrNoDelta", err)
	}
	ps, err := f.r.DescribePending("acme/router-x1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Releases) != 1 || ps.Releases[0].ReplacesPublished || len(ps.Releases[0].DeltasAdded) != 1 || ps.Releases[0].DeltasAdded[0] != "1.0.0" {
		t.Errorf("pending summary: %+v; want 1.1.0 with a delta added from 1.0.0, otherwise unchanged", ps.Releases)
	}
	if _, _, err := f.r.AddDelta("acme/router-x1", "1.1.0", "1.0.0", f.product[1]); !errors.Is(err, ErrDeltaExists) {
		t.Fatalf("second delta from the same base = %v, want ErrDeltaExists", err)
	}
	if _, _, err := f.r.AddDelta("acme/router-x1", "1.0.0", "1.1.0", f.product[1]); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("delta from a newer release to one without downgrade permission = %v, want ErrDowngrade", err)
	}
	if _, _, err := f.r.AddDelta("acme/router-x1", "3.0.0", "1.0.0", f.product[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delta for a release that does not exist = %v, want ErrNotFound", err)
	}
	if _, _, err := f.r.AddDelta("acme/router-x1", "1.1.0", "1.1.0", f.product[1]); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("delta from the release itself = %v, want ErrInvalidOptions", err)
	}
	if have, need, err := f.r.SignPending("acme/router-x1", "1.1.0", f.product[1], ps.SignedSHA256); err != nil || have != 2 || need != 2 {
		t.Fatalf("second signature: %d/%d, %v", have, need, err)
	}
	f.publish(t)

	rels, err := f.r.Releases("acme/router-x1")
	if err != nil {
		t.Fatal(err)
	}
	if m := rels[1].Metadata; !rels[1].Published || m.DeltaFrom("1.0.0") == nil || *m.DeltaFrom("1.0.0") != d.Delta {
		t.Fatalf("published 1.1.0 does not sign the delta made: %+v", m.Deltas)
	}
	file, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	slot := applyDeltaFile(t, file, &d.Delta, r1.Metadata, rels[1].Metadata, f.slotOf(t, r1, v1))
	checkSlot(t, slot, rels[1].Metadata)

	out := filepath.Join(t.TempDir(), "delta.airlock")
	bi, err := f.r.CreateBundleFileWith(out, BundleOptions{Product: "acme/router-x1", Version: "1.1.0", DeltaFrom: "1.0.0"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if bi.DeltaFrom != "1.0.0" || bi.PayloadLength != d.Delta.Length() || bi.FullPayloadLength != r2.Length {
		t.Errorf("bundle info: %+v; want a delta from 1.0.0 of %d bytes, full payload %d", bi, d.Delta.Length(), r2.Length)
	}
	bf, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	br, err := bundle.NewReader(bf, bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m := br.Metadata(); m.DeltaFrom != "1.0.0" || m.PayloadLength != d.Delta.Length() || m.TargetPath != r2.TargetPath {
		t.Fatalf("bundle: delta from %q, payload %d bytes, target %s", m.DeltaFrom, m.PayloadLength, m.TargetPath)
	}
	got, err := io.ReadAll(br.Payload())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, file) {
		t.Fatal("the bundle's payload is not the delta file")
	}
	// Its role metadata signs the delta (a device checks the headers
	// against it).
	role, err := parseMD[metadata.TargetsType](br.Metadata().Delegated[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := release.ParseCustom(*role.Signed.Targets[r2.TargetPath].Custom)
	if err != nil || bm.DeltaFrom("1.0.0") == nil || *bm.DeltaFrom("1.0.0") != d.Delta {
		t.Fatalf("the bundle's metadata does not sign the delta: %v", err)
	}
	t.Logf("delta bundle %d bytes, payload %d bytes; whole payload %d bytes", bi.Size, bi.PayloadLength, bi.FullPayloadLength)

	// A damaged or lost delta file is refused, with a hint.
	file[len(file)/2] ^= 1
	os.WriteFile(d.Path, file[:len(file)-1], 0o644)
	if _, err := f.r.CreateBundleWith(io.Discard, BundleOptions{Product: "acme/router-x1", Version: "1.1.0", DeltaFrom: "1.0.0"}); !errors.Is(err, ErrNoDelta) {
		t.Fatalf("bundle with a truncated delta file = %v, want ErrNoDelta", err)
	}
	os.Remove(d.Path)
	if _, err := f.r.CreateBundleWith(io.Discard, BundleOptions{Product: "acme/router-x1", Version: "1.1.0", DeltaFrom: "1.0.0"}); !errors.Is(err, ErrNoDelta) || !strings.Contains(err.Error(), "airlock delta create") {
		t.Fatalf("bundle without its delta file = %v, want ErrNoDelta with a hint", err)
	}
	if _, err := f.r.CreateBundleWith(io.Discard, BundleOptions{Product: "acme/router-x1", Version: "1.0.0", DeltaFrom: "1.1.0"}); !errors.Is(err, ErrNoDelta) {
		t.Fatalf("bundle of a delta never signed = %v, want ErrNoDelta", err)
	}
}

// TestAddDeltaAllowsANewerBaseForADowngradeRelease: a release signed with
// AllowDowngrade may be reached by a delta from a newer release.
func TestAddDeltaAllowsANewerBaseForADowngradeRelease(t *testing.T) {
	f := newFixture(t)
	v1, v2 := firmwarePair(5, 100<<10, 0)
	f.add(t, "2.0.0", v2, "")
	if _, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: writeBytes(t, v1), Version: "1.9.0",
		SecurityVersion: 1, Models: []string{"x1"}, AllowDowngrade: true, DeltaFrom: []string{"2.0.0"}, Signers: f.product[:2]}); err != nil {
		t.Fatal(err)
	}
}

// TestMakeDeltaSurvivesPowerCuts cuts the power at every write boundary of
// writing a delta file and requires that, after the crash, its name holds
// the whole delta or does not exist.
func TestMakeDeltaSurvivesPowerCuts(t *testing.T) {
	oldImg, newImg := firmwarePair(6, 300<<10, 0)
	img := func(b []byte, v string) *releaseImage {
		pv, err := release.ParseVersion(v)
		if err != nil {
			t.Fatal(err)
		}
		return &releaseImage{version: v, image: bytes.NewReader(b), tree: bytes.NewReader(nil),
			meta: &release.Metadata{Version: pv, Installed: release.Installed{Length: int64(len(b))}, Index: &release.Index{}}}
	}
	base, target := img(oldImg, "1.0.0"), img(newImg, "1.1.0")
	const path = "/repo/deltas/acme/router-x1/1.1.0/from-1.0.0.delta"
	setup := func(t *testing.T) *durable.Mem {
		m := durable.NewMem()
		if err := m.MkdirAll(filepath.Dir(path), DirMode); err != nil {
			t.Fatal(err)
		}
		if err := m.SyncDir(filepath.Dir(filepath.Dir(path))); err != nil {
			t.Fatal(err)
		}
		m.Crash()
		return m
	}
	m := setup(t)
	m.CutAfter(0)
	want, err := makeDelta(m, path, base, target)
	if err != nil {
		t.Fatal(err)
	}
	n := m.Ops()
	m.Crash()
	wantData, err := m.Snapshot(path)
	if err != nil || int64(len(wantData)) != want.Length {
		t.Fatalf("after an uncut delta and a crash: %d bytes, %v; want %d", len(wantData), err, want.Length)
	}
	for cut := 1; cut <= n; cut++ {
		m := setup(t)
		m.CutAfter(cut)
		if _, err := makeDelta(m, path, base, target); err == nil {
			t.Fatalf("cut %d: no error", cut)
		}
		m.Crash()
		got, err := m.Snapshot(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantData) {
			// A delta made again may differ in bytes only if the encoder is
			// not deterministic; it must be whole either way.
			var d release.Delta
			if d, err = readDeltaFile(bytes.NewReader(got), int64(len(got)), nil); err != nil || d.Length() != int64(len(got)) {
				t.Fatalf("cut %d: %s holds %d bytes that are not a whole delta: %v", cut, path, len(got), err)
			}
		}
	}
}

// TestDeltasAreAudited: release add records the deltas it made, AddDelta
// its own release.delta_added entry.
func TestDeltasAreAudited(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	auditKey := filepath.Join(t.TempDir(), "audit.pem")
	root, targets, snap, ts := genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519)
	product := genKey(t, keys.Ed25519)
	r, err := Init(dir, InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootSigners: []crypto.Signer{root},
		Targets: targets, Snapshot: snap, Timestamp: ts, AuditKey: auditKey, Options: Options{Actor: "ci:release-bot"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{product.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	v1, v2 := firmwarePair(7, 64<<10, 0)
	for _, rel := range []struct {
		v    string
		img  []byte
		from []string
	}{{"1.0.0", v1, nil}, {"1.1.0", v2, []string{"1.0.0"}}, {"1.2.0", v1, nil}} {
		if _, err := r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: writeBytes(t, rel.img), Version: rel.v,
			SecurityVersion: 1, Models: []string{"x1"}, DeltaFrom: rel.from, Signers: []crypto.Signer{product}}); err != nil {
			t.Fatal(err)
		}
	}
	d, _, err := r.AddDelta("acme/router-x1", "1.2.0", "1.1.0", product)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := audit.Query(r.AuditDir(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var added, deltaAdded []audit.Entry
	for _, e := range entries {
		switch e.Action {
		case audit.ReleaseAdded:
			added = append(added, e)
		case audit.ReleaseDeltaAdded:
			deltaAdded = append(deltaAdded, e)
		}
	}
	if len(added) != 3 || added[1].Details["deltas"] == "" || !strings.HasPrefix(added[1].Details["deltas"], "1.0.0:") || added[0].Details["deltas"] != "" {
		t.Errorf("release.added entries: %+v", added)
	}
	if len(deltaAdded) != 1 || deltaAdded[0].Release != "acme/router-x1@1.2.0" || deltaAdded[0].Details["from"] != "1.1.0" ||
		deltaAdded[0].Details["length"] != itoa(int(d.Length)) || deltaAdded[0].Details["keys"] != keyID(t, product) {
		t.Errorf("release.delta_added entries: %+v", deltaAdded)
	}
}
