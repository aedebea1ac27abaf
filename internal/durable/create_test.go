package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateFileNeverReplaces(t *testing.T) {
	for name, fsys := range map[string]FS{"OS": OS, "Mem": NewMem()} {
		t.Run(name, func(t *testing.T) {
			dir := "/d"
			if name == "OS" {
				dir = t.TempDir()
			} else if err := fsys.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "key")
			if err := CreateFile(fsys, p, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := CreateFile(fsys, p, []byte("other"), 0o600); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("second create: %v, want fs.ErrExist", err)
			}
			got, err := ReadFile(fsys, p, 100)
			if err != nil || string(got) != "secret" {
				t.Fatalf("content %q, %v", got, err)
			}
			if name == "OS" {
				if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
					t.Fatalf("mode %v", fi.Mode().Perm())
				}
			}
		})
	}
}

// TestCreateFileSurvivesACrashOnlyWhenComplete: a power cut at any point
// leaves either no file or the whole content, never an empty or partial
// key file that would block the next attempt.
func TestCreateFileSurvivesACrashOnlyWhenComplete(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o700)
	m.CutAfter(0)
	if err := CreateFile(m, "/d/key", []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := m.Ops()
	for i := 1; i <= n; i++ {
		m := NewMem()
		m.MkdirAll("/d", 0o700)
		m.CutAfter(i)
		err := CreateFile(m, "/d/key", []byte("secret"), 0o600)
		m.Crash()
		got, rerr := ReadFile(m, "/d/key", 100)
		switch {
		case err == nil && (rerr != nil || string(got) != "secret"):
			t.Fatalf("cut %d: CreateFile succeeded but the file is %q, %v", i, got, rerr)
		case rerr == nil && string(got) != "secret":
			t.Fatalf("cut %d: partial or empty key file %q survived (it would block a retry)", i, got)
		}
	}
}
