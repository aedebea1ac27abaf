package durable

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// plantedState is a state directory with an outside file and an outside
// directory an attacker wants the device to read or write.
func plantedState(t *testing.T) (state, outsideFile, outsideDir string) {
	t.Helper()
	dir := t.TempDir()
	state, outsideFile, outsideDir = filepath.Join(dir, "state"), filepath.Join(dir, "outside.txt"), filepath.Join(dir, "outside")
	for _, d := range []string{state, outsideDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(outsideFile, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	return state, outsideFile, outsideDir
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
}

func TestConfineSymlinkPlantedAtStateFileRedirectsNothing(t *testing.T) {
	state, outside, _ := plantedState(t)
	name := filepath.Join(state, "last.json")
	symlink(t, outside, name)
	c := Confine(OS, state)
	ops := map[string]func() error{
		"WriteFile": func() error { return WriteFile(c, name, []byte("redirected"), 0o644) },
		"ReadFile":  func() error { _, err := ReadFile(c, name, 1<<10); return err },
		"OpenFile": func() error {
			f, err := c.OpenFile(name, os.O_WRONLY, 0)
			if err == nil {
				f.Write([]byte("redirected"))
				f.Close()
			}
			return err
		},
		"Stat":     func() error { _, err := c.Stat(name); return err },
		"RenameTo": func() error { return c.Rename(filepath.Join(state, "x"), name) },
		"CreateFile": func() error {
			return CreateFile(c, name, []byte("redirected"), 0o600)
		},
	}
	for op, f := range ops {
		err := f()
		if !errors.Is(err, ErrSymlink) {
			t.Errorf("%s through a planted link: err = %v, want ErrSymlink", op, err)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "outside" {
		t.Errorf("outside file = %q after the refused operations, want it untouched", b)
	}
	if ents, _ := os.ReadDir(state); len(ents) != 1 {
		t.Errorf("state holds %d entries, want only the planted link (no temp file left)", len(ents))
	}
	// Removing the link removes the link, not its target.
	if err := c.Remove(name); err != nil {
		t.Fatalf("Remove(planted link): %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("removing the link removed its target: %v", err)
	}
}

func TestConfineSymlinkedStateSubdirRedirectsNothing(t *testing.T) {
	state, _, outsideDir := plantedState(t)
	trust := filepath.Join(state, "trust")
	symlink(t, outsideDir, trust)
	c := Confine(OS, state)
	name := filepath.Join(trust, "root.json")
	ops := map[string]func() error{
		"WriteFile": func() error { return WriteFile(c, name, []byte("redirected"), 0o644) },
		"ReadFile":  func() error { _, err := ReadFile(c, name, 1<<10); return err },
		"ReadDir":   func() error { _, err := c.ReadDir(trust); return err },
		"SyncDir":   func() error { return c.SyncDir(trust) },
		"MkdirAll":  func() error { return c.MkdirAll(filepath.Join(trust, "sub"), 0o755) },
		"Remove":    func() error { return c.Remove(name) },
		"Lstat":     func() error { _, err := c.Lstat(name); return err },
	}
	for op, f := range ops {
		if err := f(); !errors.Is(err, ErrSymlink) {
			t.Errorf("%s below a planted directory link: err = %v, want ErrSymlink", op, err)
		}
	}
	if ents, _ := os.ReadDir(outsideDir); len(ents) != 0 {
		t.Errorf("outside directory holds %d entries, want none", len(ents))
	}
}

func TestConfineLeavesOtherPathsAndTheDirItselfAlone(t *testing.T) {
	state, outside, _ := plantedState(t)
	// The operator may make the state directory itself a link.
	link := state + "-link"
	symlink(t, state, link)
	c := Confine(OS, link)
	if err := WriteFile(c, filepath.Join(link, "f"), []byte("ok"), 0o644); err != nil {
		t.Fatalf("write below a linked state directory: %v", err)
	}
	if got := mustRead(t, c, filepath.Join(state, "f")); string(got) != "ok" {
		t.Errorf("read back %q", got)
	}
	// Names outside the confined directory follow links as usual (a config
	// or factory root may be a link).
	cfgLink := filepath.Join(filepath.Dir(state), "cfg-link")
	symlink(t, outside, cfgLink)
	if got := mustRead(t, c, cfgLink); string(got) != "outside" {
		t.Errorf("read through a link outside the confined directory = %q", got)
	}
	if got := mustRead(t, Confine(OS, state), filepath.Join(state, "..", "outside.txt")); string(got) != "outside" {
		t.Errorf("read of a name that leaves the directory lexically = %q", got)
	}
}

func TestNoFollowRefusesALinkAsTheLastElement(t *testing.T) {
	if NoFollow == 0 {
		t.Skip("no O_NOFOLLOW on this system")
	}
	state, outside, _ := plantedState(t)
	name := filepath.Join(state, "counter")
	symlink(t, outside, name)
	if f, err := OS.OpenFile(name, os.O_WRONLY|NoFollow, 0); err == nil {
		f.Close()
		t.Fatal("OpenFile(link, NoFollow) opened the link's target")
	}
}

// TestConfineOnMemCountsTheSameOps: Confine adds only Lstat calls, which
// are not write-boundary ops, so every power-cut enumeration of a write
// through it sees the same cut points.
func TestConfineOnMemCountsTheSameOps(t *testing.T) {
	run := func(fsys FS) error {
		if err := WriteFile(fsys, "/state/trust/root.json", []byte("root"), 0o644); err != nil {
			return err
		}
		return WriteFile(fsys, "/state/counter", []byte("1"), 0o600)
	}
	setup := func() *Mem {
		m := NewMem()
		if err := m.MkdirAll("/state/trust", 0o755); err != nil {
			t.Fatal(err)
		}
		return m
	}
	plain, conf := setup(), setup()
	plain.CutAfter(0)
	conf.CutAfter(0)
	if err := run(plain); err != nil {
		t.Fatal(err)
	}
	if err := run(Confine(conf, "/state")); err != nil {
		t.Fatal(err)
	}
	if plain.Ops() != conf.Ops() {
		t.Fatalf("ops = %d through Confine, %d without", conf.Ops(), plain.Ops())
	}
	for i := 1; i <= plain.Ops(); i++ {
		m := setup()
		m.CutAfter(i)
		if err := run(Confine(m, "/state")); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("cut at op %d: err = %v, want ErrPowerCut", i, err)
		}
		m.Crash()
		got, err := ReadFile(Confine(m, "/state"), "/state/counter", 10)
		if err == nil && string(got) != "1" {
			t.Errorf("cut at op %d: counter = %q, want absent or %q", i, got, "1")
		}
	}
	if diff := cmp.Diff("1", string(mustRead(t, Confine(conf, "/state"), "/state/counter"))); diff != "" {
		t.Errorf("counter (-want +got):\n%s", diff)
	}
}
