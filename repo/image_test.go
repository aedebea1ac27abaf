package repo

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
)

// TestRebuildingTheImageInPlaceLeavesTheReleaseIntact is the field accident
// of issue 12: a release is added, then the build overwrites the image file
// in place (same inode). The repository must hold its own bytes, so the
// release still publishes and still verifies as the image that was signed.
func TestRebuildingTheImageInPlaceLeavesTheReleaseIntact(t *testing.T) {
	f := newFixture(t)
	img := writeImage(t, 3<<20)
	if err := os.Chmod(img, 0o640); err != nil {
		t.Fatal(err)
	}
	signed := fileSHA256(t, img)
	info, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: img, Version: "1.0.0",
		SecurityVersion: 1, Models: []string{"x1"}, Signers: f.product})
	if err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("release add changed the image's mode to %v, want 0640", fi.Mode().Perm())
	}
	staged := filepath.Join(f.dir, StagingDir, TargetsDir, filepath.FromSlash(path.Dir(info.TargetPath)),
		info.SHA256+"."+path.Base(info.TargetPath))
	sfi, err := os.Stat(staged)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(fi, sfi) {
		t.Fatal("the staged payload is the user's file (same inode)")
	}

	// The next build writes over the image in place: same inode, no
	// truncation, no rename.
	w, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	if _, err := w.WriteAt(junk, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSHA256(t, img) == signed {
		t.Fatal("internal error: the rebuild did not change the image")
	}

	f.publish(t)
	c := newClient(t, f.r.PublicDir(), readRoot(t, f.dir, 1))
	up, err := c.refresh(t)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := up.GetTargetInfo(info.TargetPath)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dl")
	if _, _, err := up.DownloadTarget(tf, dst, ""); err != nil {
		t.Fatalf("a device downloading the release: %v", err)
	}
	meta, err := release.ParseCustom(*tf.Custom)
	if err != nil {
		t.Fatal(err)
	}
	// Schema 2: the image follows the tree in the payload.
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.Sum256(data[meta.PayloadDataOffset():])
	if hex.EncodeToString(got[:]) != signed || hex.EncodeToString(meta.Installed.SHA256[:]) != signed {
		t.Errorf("published image %x, installed digest %x, want the image as added, %s", got, meta.Installed.SHA256, signed)
	}
}

// TestStageImageSurvivesPowerCuts cuts the power at every write boundary of
// staging an image (copied, and compressed) and requires that, after the
// crash, a payload name holds the whole payload or does not exist.
func TestStageImageSurvivesPowerCuts(t *testing.T) {
	img := make([]byte, 5*CopyBufferSize/2)
	rand.Read(img[:len(img)/2])
	const dir = "/repo/staging/targets/acme/router-x1/1.0.0"
	setup := func(t *testing.T) *durable.Mem {
		m := durable.NewMem()
		if err := m.MkdirAll(dir, DirMode); err != nil {
			t.Fatal(err)
		}
		if err := m.SyncDir("/repo/staging/targets/acme/router-x1"); err != nil {
			t.Fatal(err)
		}
		m.Crash()
		return m
	}
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			m := setup(t)
			m.CutAfter(0)
			want, err := stageImage(m, bytes.NewReader(img), dir, "firmware.img", compress, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			n := m.Ops()
			m.Crash()
			wantData, err := m.Snapshot(want.path)
			if err != nil || int64(len(wantData)) != want.length {
				t.Fatalf("after an uncut stage and a crash: %d bytes, %v; want %d", len(wantData), err, want.length)
			}
			for cut := 1; cut <= n; cut++ {
				for _, torn := range []int64{-1, 1, 2} {
					m := setup(t)
					m.CutAfter(cut)
					if _, err := stageImage(m, bytes.NewReader(img), dir, "firmware.img", compress, io.Discard); !errors.Is(err, durable.ErrPowerCut) {
						t.Fatalf("cut %d: stage = %v, want ErrPowerCut", cut, err)
					}
					if torn < 0 {
						m.Crash()
					} else {
						m.CrashTorn(torn)
					}
					entries, err := m.ReadDir(dir)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range entries {
						if strings.HasPrefix(e.Name(), ".tmp-") {
							continue // never a payload name; removed by the next stage or left unserved
						}
						p := filepath.Join(dir, e.Name())
						got, err := m.Snapshot(p)
						if err != nil && !errors.Is(err, fs.ErrNotExist) {
							t.Fatal(err)
						}
						if p != want.path || !bytes.Equal(got, wantData) {
							t.Fatalf("cut %d torn %d: %s holds %d bytes, want %s with the whole payload", cut, torn, e.Name(), len(got), filepath.Base(want.path))
						}
					}
				}
			}
		})
	}
}
