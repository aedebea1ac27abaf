package repo

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDescribeReleaseShowsWhatChanged: an approver sees the new release's
// hashes, devices and rules, and how they differ from the previous
// release, before signing.
func TestDescribeReleaseShowsWhatChanged(t *testing.T) {
	f := newFixture(t)
	first := f.addRelease(t, "1.0.0", CompressNone, f.product[0], f.product[1])
	f.publish(t)
	img := writeImage(t, 400_000)
	second, err := f.r.AddRelease(ReleaseOptions{
		Product: "acme/router-x1", ImagePath: img, Version: "1.1.0", SecurityVersion: 4,
		Models: []string{"x1", "x1-pro"}, HWRev: ">=2", Channel: "beta", Depends: []string{"bootloader>=2.0.0"},
		Compress: CompressZstd, Signers: f.product[:1],
	})
	if err != nil {
		t.Fatal(err)
	}

	s, err := f.r.DescribeRelease("acme/router-x1", "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if s.State != StatePending || s.Product != "acme/router-x1" || s.TargetPath != second.TargetPath ||
		s.Length != second.Length || s.Hashes["sha256"] != second.SHA256 || s.Compression != "zstd" ||
		s.InstalledLength != 400_000 || len(s.InstalledSHA256) != 64 || s.Environment != f.r.Environment() ||
		s.Channel != "beta" || s.HWRev != ">=2" || s.SecurityVersion != 4 || s.Created.IsZero() ||
		s.Signatures != 1 || s.Threshold != 2 || len(s.SignedBy) != 1 || s.SignedBy[0] != keyID(t, f.product[0]) {
		t.Errorf("pending summary = %+v", s)
	}
	want := &ReleaseChanges{
		PreviousVersion: "1.0.0", PreviousSecurityVersion: 1, SecurityVersionDelta: 3,
		ModelsAdded: []string{"x1-pro"}, PreviousHWRev: "*", PreviousChannel: "stable",
		PreviousCompression: "none", PreviousEnvironment: f.r.Environment(),
		DependsAdded: []string{"bootloader>=2.0.0"},
		LengthDelta:  second.Length - first.Length, InstalledLengthDelta: 100_000,
	}
	if diff := cmp.Diff(want, s.Changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}

	old, err := f.r.DescribeRelease("acme/router-x1", "1.0.0")
	if err != nil || old.State != StatePublished || old.Changes != nil || old.Signatures != 2 {
		t.Errorf("published 1.0.0 = %+v, %v", old, err)
	}
	if _, err := f.r.DescribeRelease("acme/router-x1", "9.9.9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown version: %v, want ErrNotFound", err)
	}

	ps, err := f.r.DescribePending("acme/router-x1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Releases) != 1 || ps.Releases[0].Version != "1.1.0" || ps.Unchanged != 1 || len(ps.Removed) != 0 ||
		ps.Role != "acme.router-x1" || ps.Signatures != 1 || ps.Threshold != 2 {
		t.Errorf("DescribePending = %+v", ps)
	}

	// A carried copy shows every release in it, compared in the file.
	carried := filepath.Join(t.TempDir(), "acme.router-x1.json")
	copyFile(t, filepath.Join(f.dir, "staging", "acme.router-x1.json"), carried)
	cs, err := DescribePendingFile(carried)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Releases) != 2 || cs.Role != "acme.router-x1" || cs.Threshold != 0 || cs.Releases[1].State != StateCarried {
		t.Fatalf("DescribePendingFile = %+v", cs)
	}
	if diff := cmp.Diff(want, cs.Releases[1].Changes); diff != "" {
		t.Errorf("carried changes (-want +got):\n%s", diff)
	}
}

// TestDescribePendingFlagsReplacedRelease: pending metadata that changes
// an already published release (here: its hashes) is shown as replacing
// it, not hidden among the unchanged releases.
func TestDescribePendingFlagsReplacedRelease(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "1.0.0", CompressNone, f.product[0], f.product[1])
	f.publish(t)
	f.addRelease(t, "1.1.0", CompressNone, f.product[0])
	md, err := f.r.stagedTargetsRole("acme.router-x1")
	if err != nil {
		t.Fatal(err)
	}
	for tp, tf := range md.Signed.Targets {
		if findVersion(md, "1.0.0") == tp {
			tf.Hashes["sha256"][0] ^= 1
		}
	}
	md.Signatures = nil
	if err := writeStaged(f.r, "acme.router-x1", md); err != nil {
		t.Fatal(err)
	}
	ps, err := f.r.DescribePending("acme/router-x1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Releases) != 2 || !ps.Releases[0].ReplacesPublished || ps.Releases[0].Version != "1.0.0" || ps.Unchanged != 0 {
		t.Fatalf("DescribePending = %+v", ps)
	}
	s, err := f.r.DescribeRelease("acme/router-x1", "1.0.0")
	if err != nil || s.State != StatePending || !s.ReplacesPublished {
		t.Fatalf("DescribeRelease(1.0.0) = %+v, %v", s, err)
	}
}

// TestSignRefusesWhatChangedSinceItWasShown: the approver is shown the
// pending metadata, then something adds a release before the signature:
// signing with the shown digest is refused; the staged metadata and the
// carried file keep no signature of the approver's.
func TestSignRefusesWhatChangedSinceItWasShown(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "1.0.0", CompressNone, f.product[0])
	shown, err := f.r.DescribePending("acme/router-x1")
	if err != nil {
		t.Fatal(err)
	}
	if len(shown.SignedSHA256) != 64 {
		t.Fatalf("SignedSHA256 = %q", shown.SignedSHA256)
	}
	// A carried copy, shown, then edited (a second release sneaks in).
	carried := filepath.Join(t.TempDir(), "acme.router-x1.json")
	copyFile(t, filepath.Join(f.dir, "staging", "acme.router-x1.json"), carried)
	cs, err := DescribePendingFile(carried)
	if err != nil {
		t.Fatal(err)
	}
	if cs.SignedSHA256 != shown.SignedSHA256 {
		t.Fatalf("the carried copy's digest %s differs from the staged one's %s", cs.SignedSHA256, shown.SignedSHA256)
	}

	f.addRelease(t, "1.1.0", CompressNone, f.product[0])
	if _, _, err := f.r.SignPending("acme/router-x1", "", f.product[1], shown.SignedSHA256); !errors.Is(err, ErrChanged) {
		t.Fatalf("SignPending after a change = %v, want ErrChanged", err)
	}
	now, err := f.r.DescribePending("acme/router-x1")
	if err != nil {
		t.Fatal(err)
	}
	if now.Signatures != 1 || now.SignedSHA256 == shown.SignedSHA256 {
		t.Fatalf("after the refusal: %d signatures, digest %s", now.Signatures, now.SignedSHA256)
	}
	// Signing what is now shown works.
	if have, _, err := f.r.SignPending("acme/router-x1", "", f.product[1], now.SignedSHA256); err != nil || have != 2 {
		t.Fatalf("SignPending of what was shown = %d, %v", have, err)
	}

	copyFile(t, filepath.Join(f.dir, "staging", "acme.router-x1.json"), carried) // the carried file changes too
	if _, err := SignPendingFile(carried, f.product[1], cs.SignedSHA256); !errors.Is(err, ErrChanged) {
		t.Fatalf("SignPendingFile after a change = %v, want ErrChanged", err)
	}
}
