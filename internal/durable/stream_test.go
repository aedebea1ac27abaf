package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// streamCommit writes data through a Pending file and commits it to
// /state/file, with Commit or CommitNew.
func streamCommit(fsys FS, data []byte, noReplace bool) error {
	p, err := CreateTemp(fsys, "/state", 0o644)
	if err != nil {
		return err
	}
	defer p.Abort()
	for chunk := range slicesChunk(data, 97) {
		if _, err := p.Write(chunk); err != nil {
			return err
		}
	}
	if noReplace {
		return p.CommitNew("/state/file")
	}
	return p.Commit("/state/file")
}

func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

// TestPendingIsAtomicUnderEveryPowerCut cuts power at every write boundary
// of a streamed write and checks that /state/file then holds the old or the
// complete new content, never a prefix, and that CommitNew never replaces.
func TestPendingIsAtomicUnderEveryPowerCut(t *testing.T) {
	newContent := []byte(strings.Repeat("streamed ", 200))
	tests := []struct {
		name      string
		old       []byte
		noReplace bool
	}{
		{"Commit replaces", []byte("old"), false},
		{"Commit creates", nil, false},
		{"CommitNew creates", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newStateMem(t, tt.old)
			m.CutAfter(0)
			if err := streamCommit(m, newContent, tt.noReplace); err != nil {
				t.Fatal(err)
			}
			n := m.Ops()
			m.Crash()
			if got, _ := m.Snapshot("/state/file"); string(got) != string(newContent) {
				t.Fatalf("after an uncut commit and a crash: %d bytes, want the new content", len(got))
			}
			for cut := 1; cut <= n; cut++ {
				for _, torn := range []int64{-1, 1, 2, 3} {
					t.Run(fmt.Sprintf("cut=%d/torn=%d", cut, torn), func(t *testing.T) {
						m := newStateMem(t, tt.old)
						m.CutAfter(cut)
						if err := streamCommit(m, newContent, tt.noReplace); !errors.Is(err, ErrPowerCut) {
							t.Fatalf("commit with a cut = %v, want ErrPowerCut", err)
						}
						if torn < 0 {
							m.Crash()
						} else {
							m.CrashTorn(torn)
						}
						got, err := ReadFile(m, "/state/file", 1<<20)
						switch {
						case errors.Is(err, fs.ErrNotExist) && tt.old == nil:
						case err != nil:
							t.Fatalf("after crash: %v", err)
						case string(got) == string(newContent):
						case tt.old != nil && string(got) == string(tt.old):
						default:
							t.Fatalf("after crash the file holds %d bytes, neither old nor new", len(got))
						}
					})
				}
			}
		})
	}
}

func TestPendingCommitNewNeverReplaces(t *testing.T) {
	for name, fsys := range map[string]func(t *testing.T) (FS, string){
		"Mem": func(t *testing.T) (FS, string) { return newStateMem(t, []byte("old")), "/state" },
		"OS": func(t *testing.T) (FS, string) {
			d := t.TempDir()
			if err := WriteFile(OS, d+"/file", []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			return OS, d
		},
	} {
		t.Run(name, func(t *testing.T) {
			f, dir := fsys(t)
			p, err := CreateTemp(f, dir, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			p.Write([]byte("new"))
			if err := p.CommitNew(dir + "/file"); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("CommitNew over an existing file = %v, want fs.ErrExist", err)
			}
			if got := mustRead(t, f, dir+"/file"); string(got) != "old" {
				t.Errorf("existing file = %q, want it untouched", got)
			}
			if names := dirNames(t, f, dir); len(names) != 1 {
				t.Errorf("directory holds %q, want only the existing file (temp removed)", names)
			}
		})
	}
}

func TestRenameAndRemoveAreDurable(t *testing.T) {
	m := newStateMem(t, []byte("x"))
	if err := Rename(m, "/state/file", "/state/sub/moved", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFileRaw("/state/gone", []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Remove(m, "/state/gone"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(m, "/state/never-was"); err != nil {
		t.Fatalf("Remove of an absent file: %v", err)
	}
	m.Crash()
	if got, err := m.Snapshot("/state/sub/moved"); err != nil || string(got) != "x" {
		t.Errorf("after crash moved file = %q, %v", got, err)
	}
	if _, err := m.Stat("/state/file"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after crash the old name exists: %v", err)
	}
	if _, err := m.Stat("/state/gone"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after crash the removed file exists: %v", err)
	}
}
