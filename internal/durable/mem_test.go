package durable

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// newStateMem returns a Mem with a durable /state directory and, if old is
// not nil, a durable /state/file holding old.
func newStateMem(t *testing.T, old []byte) *Mem {
	t.Helper()
	m := NewMem()
	if err := m.MkdirAll("/state", 0o755); err != nil {
		t.Fatal(err)
	}
	if old != nil {
		if err := m.WriteFileRaw("/state/file", old, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestWriteFileIsAtomicUnderEveryPowerCut cuts power at every write boundary
// of WriteFile (and crashes with and without torn writes) and checks that the
// file then holds the old or the new content, never a mix, and is never lost
// if it existed before.
func TestWriteFileIsAtomicUnderEveryPowerCut(t *testing.T) {
	newContent := []byte(strings.Repeat("new content ", 100))
	tests := []struct {
		name string
		old  []byte // nil: file absent before
	}{
		{"replace existing", []byte("old")},
		{"replace existing longer", []byte(strings.Repeat("OLD", 1000))},
		{"replace empty", []byte{}},
		{"create new", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newStateMem(t, tt.old)
			m.CutAfter(0)
			if err := WriteFile(m, "/state/file", newContent, 0o600); err != nil {
				t.Fatal(err)
			}
			n := m.Ops()
			if n != 5 { // create, write, sync, rename, syncdir
				t.Errorf("WriteFile took %d write-boundary ops, want 5", n)
			}
			m.Crash()
			if got, _ := m.Snapshot("/state/file"); string(got) != string(newContent) {
				t.Errorf("after uncut WriteFile and crash: %d bytes, want new content", len(got))
			}

			for cut := 1; cut <= n; cut++ {
				for _, torn := range []int64{-1, 1, 2, 3, 4, 5, 6, 7, 8} {
					t.Run(fmt.Sprintf("cut=%d/torn=%d", cut, torn), func(t *testing.T) {
						m := newStateMem(t, tt.old)
						m.CutAfter(cut)
						err := WriteFile(m, "/state/file", newContent, 0o600)
						if !errors.Is(err, ErrPowerCut) {
							t.Fatalf("WriteFile with cut = %v, want ErrPowerCut", err)
						}
						if torn < 0 {
							m.Crash()
						} else {
							m.CrashTorn(torn)
						}
						got, err := ReadFile(m, "/state/file", 1<<20)
						switch {
						case errors.Is(err, fs.ErrNotExist) && tt.old == nil:
							// Never existed, still absent: fine.
						case err != nil:
							t.Fatalf("after crash: %v", err)
						case string(got) == string(newContent):
						case tt.old != nil && string(got) == string(tt.old):
						default:
							t.Fatalf("after crash file holds %d bytes %.20q..., neither old nor new", len(got), got)
						}
						if torn < 0 {
							// Without torn writes nothing but the target can
							// survive: the temp file was never durable.
							names := dirNames(t, m, "/state")
							if len(names) > 1 {
								t.Errorf("leftover files after crash: %q", names)
							}
						}
					})
				}
			}
		})
	}
}

func TestPowerCutStopsEverythingUntilCrash(t *testing.T) {
	m := newStateMem(t, []byte("old"))
	f, err := m.OpenFile("/state/file", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.CutAfter(1)
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("cut Write = %v, want ErrPowerCut", err)
	}
	if got, _ := m.Snapshot("/state/file"); string(got) != "old" {
		t.Errorf("cut Write changed the file: %q", got)
	}
	if !m.PoweredOff() {
		t.Error("PoweredOff = false after the cut")
	}
	ops := map[string]func() error{
		"Read":     func() error { _, err := f.Read(make([]byte, 1)); return err },
		"ReadAt":   func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err },
		"Write":    func() error { _, err := f.Write([]byte("y")); return err },
		"Sync":     f.Sync,
		"Truncate": func() error { return f.Truncate(0) },
		"Stat":     func() error { _, err := m.Stat("/state/file"); return err },
		"ReadDir":  func() error { _, err := m.ReadDir("/state"); return err },
		"Open":     func() error { _, err := m.OpenFile("/state/file", os.O_RDONLY, 0); return err },
		"Create":   func() error { _, err := m.OpenFile("/state/new", os.O_CREATE|os.O_WRONLY, 0o600); return err },
		"Rename":   func() error { return m.Rename("/state/file", "/state/other") },
		"Remove":   func() error { return m.Remove("/state/file") },
		"SyncDir":  func() error { return m.SyncDir("/state") },
		"MkdirAll": func() error { return m.MkdirAll("/state/d", 0o755) },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			if err := op(); !errors.Is(err, ErrPowerCut) {
				t.Errorf("%s after cut = %v, want ErrPowerCut", name, err)
			}
		})
	}
	m.Crash()
	if m.PoweredOff() {
		t.Error("PoweredOff = true after Crash")
	}
	if _, err := f.Read(make([]byte, 1)); err == nil || errors.Is(err, ErrPowerCut) {
		t.Errorf("Read on pre-crash handle = %v, want a stale handle error", err)
	}
	if got := mustRead(t, m, "/state/file"); string(got) != "old" {
		t.Errorf("after reboot = %q, want old", got)
	}
	if err := WriteFile(m, "/state/file", []byte("new"), 0o600); err != nil {
		t.Errorf("WriteFile after reboot: %v", err)
	}
}

// TestCrashLosesWhatWasNotSynced checks each durability rule of the model.
func TestCrashLosesWhatWasNotSynced(t *testing.T) {
	tests := []struct {
		name string
		run  func(m *Mem) error
		want map[string]string // file -> content after crash; absent files not listed
	}{
		{
			name: "new file without SyncDir disappears",
			run: func(m *Mem) error {
				f, err := m.OpenFile("/state/new", os.O_CREATE|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				f.Write([]byte("data"))
				return f.Sync()
			},
			want: map[string]string{"file": "old"},
		},
		{
			name: "new file with SyncDir but no Sync is empty",
			run: func(m *Mem) error {
				f, err := m.OpenFile("/state/new", os.O_CREATE|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				f.Write([]byte("data"))
				return m.SyncDir("/state")
			},
			want: map[string]string{"file": "old", "new": ""},
		},
		{
			name: "new file with Sync and SyncDir survives",
			run: func(m *Mem) error {
				f, err := m.OpenFile("/state/new", os.O_CREATE|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				f.Write([]byte("data"))
				if err := f.Sync(); err != nil {
					return err
				}
				return m.SyncDir("/state")
			},
			want: map[string]string{"file": "old", "new": "data"},
		},
		{
			name: "unsynced overwrite is lost",
			run: func(m *Mem) error {
				f, err := m.OpenFile("/state/file", os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				_, err = f.WriteAt([]byte("NEW"), 0)
				return err
			},
			want: map[string]string{"file": "old"},
		},
		{
			name: "unsynced truncate is lost",
			run: func(m *Mem) error {
				f, err := m.OpenFile("/state/file", os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					return err
				}
				return f.Close()
			},
			want: map[string]string{"file": "old"},
		},
		{
			name: "O_SYNC write survives",
			run: func(m *Mem) error {
				f, err := m.OpenFile("/state/file", os.O_WRONLY|os.O_SYNC, 0)
				if err != nil {
					return err
				}
				_, err = f.WriteAt([]byte("OL"), 0)
				return err
			},
			want: map[string]string{"file": "OLd"},
		},
		{
			name: "rename without SyncDir is undone",
			run: func(m *Mem) error {
				if err := m.WriteFileRaw("/state/tmp", []byte("new"), 0o600); err != nil {
					return err
				}
				return m.Rename("/state/tmp", "/state/file")
			},
			want: map[string]string{"file": "old", "tmp": "new"},
		},
		{
			name: "rename with SyncDir survives",
			run: func(m *Mem) error {
				if err := m.WriteFileRaw("/state/tmp", []byte("new"), 0o600); err != nil {
					return err
				}
				if err := m.Rename("/state/tmp", "/state/file"); err != nil {
					return err
				}
				return m.SyncDir("/state")
			},
			want: map[string]string{"file": "new"},
		},
		{
			name: "remove without SyncDir is undone",
			run:  func(m *Mem) error { return m.Remove("/state/file") },
			want: map[string]string{"file": "old"},
		},
		{
			name: "remove with SyncDir survives",
			run: func(m *Mem) error {
				if err := m.Remove("/state/file"); err != nil {
					return err
				}
				return m.SyncDir("/state")
			},
			want: map[string]string{},
		},
		{
			name: "MkdirAll is durable at once",
			run:  func(m *Mem) error { return m.MkdirAll("/state/dir/sub", 0o755) },
			want: map[string]string{"file": "old", "dir": "<dir>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newStateMem(t, []byte("old"))
			if err := tt.run(m); err != nil {
				t.Fatal(err)
			}
			m.Crash()
			got := map[string]string{}
			ents, err := m.ReadDir("/state")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.IsDir() {
					got[e.Name()] = "<dir>"
					continue
				}
				got[e.Name()] = string(mustRead(t, m, "/state/"+e.Name()))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("after crash (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCrashTornKeepsAPrefixOfWrites checks that a torn crash keeps the
// synced content plus a prefix of the unsynced writes, reproducibly per seed,
// and that across seeds both extremes occur.
func TestCrashTornKeepsAPrefixOfWrites(t *testing.T) {
	const synced = "0000000000"
	writes := []string{"aaaa", "bbbb", "cc"}
	// Every state a prefix (with the next write possibly cut short) can give.
	valid := map[string]bool{}
	cur := []byte(synced)
	for _, w := range writes {
		for i := 0; i <= len(w); i++ {
			d := slices.Clone(cur)
			d = append(d, w[:i]...)
			valid[string(d)] = true
		}
		cur = append(cur, w...)
	}
	run := func(seed int64) string {
		m := newStateMem(t, []byte(synced))
		f, err := m.OpenFile("/state/file", os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range writes {
			if _, err := f.Write([]byte(w)); err != nil {
				t.Fatal(err)
			}
		}
		m.CrashTorn(seed)
		b, err := m.Snapshot("/state/file")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	seen := map[string]bool{}
	for seed := int64(0); seed < 200; seed++ {
		got := run(seed)
		if !valid[got] {
			t.Fatalf("seed %d: %q is not synced content plus a prefix of the writes", seed, got)
		}
		if again := run(seed); again != got {
			t.Fatalf("seed %d not reproducible: %q then %q", seed, got, again)
		}
		seen[got] = true
	}
	for _, want := range []string{synced, string(cur)} {
		if !seen[want] {
			t.Errorf("200 seeds never produced %q", want)
		}
	}
}

func TestOpsCountsWriteBoundaries(t *testing.T) {
	m := newStateMem(t, []byte("old"))
	m.CutAfter(0)
	f, _ := m.OpenFile("/state/file", os.O_RDWR, 0)                // not counted
	f.Read(make([]byte, 2))                                        // not counted
	f.Write([]byte("x"))                                           // 1
	f.WriteAt([]byte("y"), 0)                                      // 2
	f.Truncate(1)                                                  // 3
	f.Sync()                                                       // 4
	f.Seek(0, io.SeekStart)                                        // not counted
	f.Close()                                                      // not counted
	g, _ := m.OpenFile("/state/g", os.O_CREATE|os.O_WRONLY, 0o600) // 5
	g.Close()                                                      // not counted
	m.Rename("/state/g", "/state/h")                               // 6
	m.Remove("/state/h")                                           // 7
	m.SyncDir("/state")                                            // 8
	m.Stat("/state/file")                                          // not counted
	m.MkdirAll("/state/d", 0o755)                                  // not counted
	if got := m.Ops(); got != 8 {
		t.Errorf("Ops() = %d, want 8", got)
	}
}
