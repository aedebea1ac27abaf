package durable

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fsCase is an FS under test rooted at dir.
type fsCase struct {
	name string
	new  func(t *testing.T) (FS, string)
}

var allFS = []fsCase{
	{"OS", func(t *testing.T) (FS, string) { return OS, t.TempDir() }},
	{"Mem", func(t *testing.T) (FS, string) {
		m := NewMem()
		if err := m.MkdirAll("/state", 0o755); err != nil {
			t.Fatal(err)
		}
		return m, "/state"
	}},
}

func mustRead(t *testing.T, fsys FS, name string) []byte {
	t.Helper()
	b, err := ReadFile(fsys, name, 1<<20)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", name, err)
	}
	return b
}

func dirNames(t *testing.T, fsys FS, dir string) []string {
	t.Helper()
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%q): %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileRoundTripLeavesNoTempFiles(t *testing.T) {
	for _, c := range allFS {
		t.Run(c.name, func(t *testing.T) {
			fsys, dir := c.new(t)
			name := filepath.Join(dir, "state")
			for _, content := range []string{"first", "second, longer", ""} {
				if err := WriteFile(fsys, name, []byte(content), 0o600); err != nil {
					t.Fatalf("WriteFile: %v", err)
				}
				if diff := cmp.Diff(content, string(mustRead(t, fsys, name))); diff != "" {
					t.Errorf("content mismatch (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff([]string{"state"}, dirNames(t, fsys, dir)); diff != "" {
				t.Errorf("directory has leftovers (-want +got):\n%s", diff)
			}
			fi, err := fsys.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

func TestWriteFileRemovesTempFileOnError(t *testing.T) {
	for _, c := range allFS {
		t.Run(c.name, func(t *testing.T) {
			fsys, dir := c.new(t)
			// Renaming a file over a non-empty directory fails.
			target := filepath.Join(dir, "target")
			if err := fsys.MkdirAll(filepath.Join(target, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := WriteFile(fsys, target, []byte("x"), 0o600); err == nil {
				t.Fatal("WriteFile over a directory succeeded")
			}
			if diff := cmp.Diff([]string{"target"}, dirNames(t, fsys, dir)); diff != "" {
				t.Errorf("temp file left behind (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadFileRejectsOversizedFile(t *testing.T) {
	const max = 16
	tests := []struct {
		size    int
		wantErr error
	}{
		{0, nil},
		{max - 1, nil},
		{max, nil},
		{max + 1, ErrTooLarge},
		{10 * max, ErrTooLarge},
	}
	for _, c := range allFS {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%d_bytes", c.name, tt.size), func(t *testing.T) {
				fsys, dir := c.new(t)
				name := filepath.Join(dir, "f")
				want := bytes.Repeat([]byte{'a'}, tt.size)
				if err := WriteFile(fsys, name, want, 0o600); err != nil {
					t.Fatal(err)
				}
				got, err := ReadFile(fsys, name, max)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadFile error = %v, want %v", err, tt.wantErr)
				}
				if err == nil && !bytes.Equal(got, want) {
					t.Errorf("ReadFile = %d bytes, want %d", len(got), len(want))
				}
			})
		}
	}
}

func TestReadFileMissingIsNotExist(t *testing.T) {
	for _, c := range allFS {
		t.Run(c.name, func(t *testing.T) {
			fsys, dir := c.new(t)
			if _, err := ReadFile(fsys, filepath.Join(dir, "nope"), 10); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error = %v, want fs.ErrNotExist", err)
			}
		})
	}
}

// TestFSConformance runs the same operations on OS and Mem so Mem's
// semantics stay those of a real filesystem.
func TestFSConformance(t *testing.T) {
	for _, c := range allFS {
		t.Run(c.name, func(t *testing.T) {
			fsys, dir := c.new(t)
			name := filepath.Join(dir, "f")
			if _, err := fsys.OpenFile(name, os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("open missing: %v, want ErrNotExist", err)
			}
			f, err := fsys.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrExist) {
				t.Errorf("O_EXCL on existing: %v, want ErrExist", err)
			}
			if _, err := f.Write([]byte("hello world")); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("W"), 6); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("!"), 13); err != nil { // leaves a hole
				t.Fatal(err)
			}
			if off, err := f.Seek(0, io.SeekStart); err != nil || off != 0 {
				t.Fatalf("Seek = %d, %v", off, err)
			}
			got, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff("hello World\x00\x00!", string(got)); diff != "" {
				t.Errorf("content (-want +got):\n%s", diff)
			}
			buf := make([]byte, 4)
			if n, err := f.ReadAt(buf, 12); n != 2 || err != io.EOF {
				t.Errorf("short ReadAt = %d, %v, want 2, EOF", n, err)
			}
			if err := f.Truncate(5); err != nil {
				t.Fatal(err)
			}
			if fi, err := f.Stat(); err != nil || fi.Size() != 5 || fi.Name() != "f" || fi.IsDir() {
				t.Errorf("Stat = %v, %v", fi, err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err == nil {
				t.Error("second Close succeeded")
			}
			if _, err := f.Write([]byte("x")); err == nil {
				t.Error("Write after Close succeeded")
			}

			ro, err := fsys.OpenFile(name, os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ro.Write([]byte("x")); err == nil {
				t.Error("Write on read-only file succeeded")
			}
			ro.Close()

			ap, err := fsys.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ap.Write([]byte("!")); err != nil {
				t.Fatal(err)
			}
			ap.Close()
			if diff := cmp.Diff("hello!", string(mustRead(t, fsys, name))); diff != "" {
				t.Errorf("after append (-want +got):\n%s", diff)
			}

			tr, err := fsys.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			tr.Close()
			if got := mustRead(t, fsys, name); len(got) != 0 {
				t.Errorf("after O_TRUNC: %q", got)
			}

			if err := fsys.Rename(name, filepath.Join(dir, "g")); err != nil {
				t.Fatal(err)
			}
			if _, err := fsys.Stat(name); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat of renamed-away file: %v", err)
			}
			if err := fsys.SyncDir(dir); err != nil {
				t.Fatal(err)
			}
			if err := fsys.SyncDir(filepath.Join(dir, "missing")); err == nil {
				t.Error("SyncDir of missing dir succeeded")
			}
			if err := fsys.Remove(filepath.Join(dir, "g")); err != nil {
				t.Fatal(err)
			}
			if err := fsys.Remove(filepath.Join(dir, "g")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Remove of missing file: %v", err)
			}
			if err := fsys.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
				t.Fatal(err)
			}
			if fi, err := fsys.Stat(filepath.Join(dir, "a", "b")); err != nil || !fi.IsDir() {
				t.Errorf("Stat dir = %v, %v", fi, err)
			}
			if err := fsys.Remove(filepath.Join(dir, "a")); err == nil {
				t.Error("Remove of non-empty dir succeeded")
			}
		})
	}
}

// FuzzReadFileLimit checks that ReadFile returns the whole file exactly when
// it fits in max and ErrTooLarge otherwise, never more than max bytes.
func FuzzReadFileLimit(f *testing.F) {
	f.Add([]byte("counter"), int64(7))
	f.Add([]byte("counter"), int64(6))
	f.Add([]byte{}, int64(0))
	f.Add([]byte("x"), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, max int64) {
		if max < 0 {
			if _, err := ReadFile(NewMem(), "/f", max); err == nil {
				t.Fatal("negative limit accepted")
			}
			return
		}
		m := NewMem()
		if err := m.WriteFileRaw("/f", data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(m, "/f", max)
		if int64(len(data)) > max {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%d bytes with max %d: err = %v, want ErrTooLarge", len(data), max, err)
			}
			return
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes with max %d: got %d bytes, %v", len(data), max, len(got), err)
		}
	})
}
