package director

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
)

func TestParseMetadataName(t *testing.T) {
	for _, tc := range []struct {
		in      string
		version int64
		role    string
		ok      bool
	}{
		{"timestamp.json", 0, "timestamp", true},
		{"3.targets.json", 3, "targets", true},
		{"1.root.json", 1, "root", true},
		{"0.root.json", 0, "", false},
		{"01.root.json", 0, "", false},
		{"-1.root.json", 0, "", false},
		{"1.a.b.json", 0, "", false},
		{"root", 0, "", false},
		{".json", 0, "", true},
		{"99999999999999999999.root.json", 0, "", false},
	} {
		v, role, ok := ParseMetadataName(tc.in)
		if ok != tc.ok || (ok && (v != tc.version || role != tc.role)) {
			t.Errorf("ParseMetadataName(%q) = %d, %q, %v; want %d, %q, %v", tc.in, v, role, ok, tc.version, tc.role, tc.ok)
		}
	}
}

// TestKeysAreSealedAndTheRootIsStable: the director's keys at rest are
// sealed with the KEK, a reopened director keeps its root, another KEK
// fails closed, and the freshness rule re-signs a changed assignment.
func TestKeysAreSealedAndTheRootIsStable(t *testing.T) {
	dir := t.TempDir()
	kek, _, err := auth.LoadOrCreateKEK(filepath.Join(dir, auth.KEKFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	d1, err := Open(filepath.Join(dir, Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := Open(filepath.Join(dir, Dir), kek, now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := d1.Root(1)
	r2, ok := d2.Root(1)
	if !ok || !bytes.Equal(r1, r2) || d2.Roots() != 1 {
		t.Fatal("reopening the director changed its root")
	}
	for _, f := range []string{RootKeyFile, OnlineKeyFile} {
		data, err := os.ReadFile(filepath.Join(dir, Dir, f))
		if err != nil || bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Fatalf("%s is not sealed (%v)", f, err)
		}
	}
	other, _ := auth.NewKEK(bytes.Repeat([]byte{9}, auth.KEKSize))
	if _, err := Open(filepath.Join(dir, Dir), other, now, 0, 0); !errors.Is(err, ErrKeys) {
		t.Fatalf("director opened with another KEK: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "x"), kek, now, time.Second, 0); !errors.Is(err, ErrExpiry) {
		t.Fatalf("1s timestamp expiry accepted: %v", err)
	}
	next := d1.Next(store.DirectorState{}, "dev-a", "fp1", now)
	if next.Version != 1 || !d1.Fresh(next, "fp1", now) || d1.Fresh(next, "fp2", now) ||
		d1.Fresh(next, "fp1", now.Add(DefaultTimestampExpiry)) {
		t.Fatalf("freshness rule: %+v", next)
	}
}
