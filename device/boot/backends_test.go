package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/internal/durable"
)

// testBackends returns one Config per backend and layout, rooted at dir.
func testBackends(dir string) []Config {
	return []Config{
		{Backend: BackendSim, Path: filepath.Join(dir, "boot.state")},
		{Backend: BackendGrubEnv, Path: filepath.Join(dir, "grubenv")},
		{Backend: BackendUBootEnv, Path: filepath.Join(dir, "uboot.env"), Offset: 0x400, EnvSize: 0x1000},
		{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: 0x2000},
		{Backend: BackendUBootEnv, Path: filepath.Join(dir, "flash"), RedundPath: filepath.Join(dir, "flash"),
			Offset: 0x2000, RedundOffset: 0x0, EnvSize: 0x2000},
	}
}

func layoutName(cfg Config) string {
	switch {
	case cfg.Backend != BackendUBootEnv:
		return cfg.Backend
	case cfg.RedundPath == "":
		return "uboot-env/single"
	case cfg.RedundPath == cfg.Path:
		return "uboot-env/redundant-one-file"
	}
	return "uboot-env/redundant-two-files"
}

// storeSequence is a plausible life of a device: install into B, boot
// attempts, commit, a failed install marked bad.
var storeSequence = []State{
	{Good: SlotA, Trial: SlotB, BootLimit: 3},
	{Good: SlotA, Trial: SlotB, BootCount: 1, BootLimit: 3},
	{Good: SlotB, BootLimit: 3},
	{Good: SlotB, Trial: SlotA, BootLimit: 1},
	{Good: SlotB, BootCount: 1, BootLimit: 1, Bad: []Slot{SlotA}},
	{Good: SlotA, Bad: []Slot{SlotA, SlotB}, BootLimit: MaxBootCounter, BootCount: MaxBootCounter},
}

func TestStoreThenLoadReturnsTheStoredState(t *testing.T) {
	for _, cfg := range testBackends(t.TempDir()) {
		t.Run(layoutName(cfg), func(t *testing.T) {
			initial := State{Good: SlotA} // BootLimit 0: stored as the default
			if err := Init(durable.OS, cfg, initial); err != nil {
				t.Fatal(err)
			}
			c, err := Open(durable.OS, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Load()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(State{Good: SlotA, BootLimit: DefaultBootLimit}, got); diff != "" {
				t.Fatalf("Load after Init (-want +got):\n%s", diff)
			}
			for i, st := range storeSequence {
				if err := c.Store(st); err != nil {
					t.Fatalf("Store #%d: %v", i, err)
				}
				got, err := c.Load()
				if err != nil {
					t.Fatalf("Load #%d: %v", i, err)
				}
				if diff := cmp.Diff(st, got); diff != "" {
					t.Fatalf("Load #%d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func snapshotFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func TestStoreRejectsInvalidStateWithoutWriting(t *testing.T) {
	for _, cfg := range testBackends(t.TempDir()) {
		t.Run(layoutName(cfg), func(t *testing.T) {
			if err := Init(durable.OS, cfg, State{Good: SlotB}); err != nil {
				t.Fatal(err)
			}
			before := snapshotFiles(t, filepath.Dir(cfg.Path))
			c, err := Open(durable.OS, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, bad := range []State{{}, {Good: SlotB, Trial: SlotB}, {Good: SlotA, Bad: []Slot{SlotB, SlotA}}} {
				if err := c.Store(bad); !errors.Is(err, ErrInvalidState) {
					t.Errorf("Store(%+v) = %v, want ErrInvalidState", bad, err)
				}
			}
			if diff := cmp.Diff(before, snapshotFiles(t, filepath.Dir(cfg.Path))); diff != "" {
				t.Errorf("files changed by rejected Store (-before +after):\n%s", diff)
			}
			if err := Init(durable.OS, cfg, State{Good: SlotA, Trial: SlotA}); !errors.Is(err, ErrInvalidState) {
				t.Errorf("Init with invalid state = %v, want ErrInvalidState", err)
			}
		})
	}
}

// foreign are variables Airlock does not own; Store must keep them, in order.
var foreign = []envVar{
	{"bootcmd", "run distro_bootcmd; echo a=b"},
	{"bootdelay", "3"},
	{"note", "back\\slash and\nnewline"},
	{"empty", ""},
}

func foreignEnv(st State) *env {
	e := newEnv()
	e.vars = append(e.vars, foreign[:2]...)
	applyState(e, st.normalized())
	e.vars = append(e.vars, foreign[2:]...)
	return e
}

func TestStorePreservesForeignVariables(t *testing.T) {
	dir := t.TempDir()
	old := State{Good: SlotA, Trial: SlotB, Bad: []Slot{SlotB}}
	next := State{Good: SlotA, BootLimit: 2}
	for _, cfg := range testBackends(dir)[1:] {
		t.Run(layoutName(cfg), func(t *testing.T) {
			c, err := Open(durable.OS, cfg)
			if err != nil {
				t.Fatal(err)
			}
			readEnv := func() *env { // the current copy / block
				switch c := c.(type) {
				case *grubControl:
					b, err := c.read()
					if err != nil {
						t.Fatal(err)
					}
					return b.env
				case *ubootControl:
					_, img, err := c.current()
					if err != nil {
						t.Fatal(err)
					}
					e, err := parseUBootData(img.data)
					if err != nil {
						t.Fatal(err)
					}
					return e
				}
				panic("unreachable")
			}
			switch c := c.(type) {
			case *grubControl:
				data, err := marshalGrubEnv(&grubBlock{env: foreignEnv(old)})
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cfg.Path, data, 0o644); err != nil {
					t.Fatal(err)
				}
			case *ubootControl:
				for i := range c.copies {
					if err := c.writeCopy(i, foreignEnv(old), byte(i^1), true); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := c.Store(next); err != nil {
				t.Fatal(err)
			}
			want := []envVar{
				foreign[0], foreign[1],
				{VarBootSlot, "A"}, {VarUpgradeAvailable, "0"}, {VarBootCount, "0"}, {VarBootLimit, "2"}, {VarGood, "A"},
				foreign[2], foreign[3],
			}
			if diff := cmp.Diff(want, readEnv().vars, cmp.AllowUnexported(envVar{})); diff != "" {
				t.Errorf("environment after Store (-want +got):\n%s", diff)
			}
		})
	}
}

func envOf(pairs ...string) *env {
	e := newEnv()
	for i := 0; i < len(pairs); i += 2 {
		e.vars = append(e.vars, envVar{pairs[i], pairs[i+1]})
	}
	return e
}

func TestLoadRejectsInconsistentVariables(t *testing.T) {
	base := []string{VarBootSlot, "B", VarUpgradeAvailable, "1", VarBootCount, "0", VarBootLimit, "1", VarGood, "A", VarTrial, "B"}
	with := func(name, value string) *env {
		e := envOf(base...)
		e.set(name, value)
		return e
	}
	without := func(name string) *env {
		e := envOf(base...)
		e.unset(name)
		return e
	}
	tests := []struct {
		name string
		env  *env
		want error // nil: valid
	}{
		{"valid trial", envOf(base...), nil},
		{"empty trial and bad mean none", envOf(VarBootSlot, "A", VarUpgradeAvailable, "0", VarBootCount, "0", VarBootLimit, "1", VarGood, "A", VarTrial, "", VarBad, ""), nil},
		{"stale boot_slot is accepted", with(VarBootCount, "1"), nil},
		{"missing good", without(VarGood), ErrMissingVariable},
		{"missing bootcount", without(VarBootCount), ErrMissingVariable},
		{"missing bootlimit", without(VarBootLimit), ErrMissingVariable},
		{"missing upgrade_available", without(VarUpgradeAvailable), ErrMissingVariable},
		{"missing boot_slot", without(VarBootSlot), ErrMissingVariable},
		{"upgrade_available without trial", without(VarTrial), ErrCorrupt},
		{"upgrade_available not 0 or 1", with(VarUpgradeAvailable, "yes"), ErrCorrupt},
		{"trial equals good", with(VarTrial, "A"), ErrInvalidState},
		{"good is recovery", with(VarGood, "R"), ErrCorrupt},
		{"lowercase trial", with(VarTrial, "b"), ErrCorrupt},
		{"boot_slot unknown", with(VarBootSlot, "C"), ErrCorrupt},
		{"leading zero", with(VarBootCount, "01"), ErrCorrupt},
		{"plus sign", with(VarBootCount, "+1"), ErrCorrupt},
		{"minus sign", with(VarBootCount, "-1"), ErrCorrupt},
		{"hex", with(VarBootCount, "0x1"), ErrCorrupt},
		{"space", with(VarBootCount, " 1"), ErrCorrupt},
		{"empty count", with(VarBootCount, ""), ErrCorrupt},
		{"count overflow", with(VarBootCount, "2147483648"), ErrCorrupt},
		{"count 64-bit overflow", with(VarBootCount, "99999999999999999999"), ErrCorrupt},
		{"bootlimit zero", with(VarBootLimit, "0"), ErrCorrupt},
		{"bad unsorted", with(VarBad, "B,A"), ErrCorrupt},
		{"bad duplicate", with(VarBad, "A,A"), ErrCorrupt},
		{"bad trailing comma", with(VarBad, "A,"), ErrCorrupt},
		{"bad recovery", with(VarBad, "R"), ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stateFromEnv("test", tt.env)
			if tt.want == nil && err != nil {
				t.Fatalf("stateFromEnv = %v, want success", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("stateFromEnv = %v, want %v", err, tt.want)
			}
			if tt.want != nil && !errors.Is(err, ErrCorrupt) {
				t.Errorf("stateFromEnv = %v, does not wrap ErrCorrupt", err)
			}
		})
	}
}

// rawUBootCopy builds one U-Boot environment copy; a nil flags means the
// single-copy layout.
func rawUBootCopy(t testing.TB, size int, flags *byte, e *env) []byte {
	t.Helper()
	hdr := 4
	if flags != nil {
		hdr = 5
	}
	buf := make([]byte, size)
	if err := marshalUBootData(buf[hdr:], e); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(buf, crc32.ChecksumIEEE(buf[hdr:]))
	if flags != nil {
		buf[4] = *flags
	}
	return buf
}

func stateEnv(st State) *env {
	e := newEnv()
	applyState(e, st.normalized())
	return e
}

func TestRedundantLoadPicksNewestValidCopy(t *testing.T) {
	s0 := State{Good: SlotA, BootLimit: 1}
	s1 := State{Good: SlotA, Trial: SlotB, BootLimit: 1}
	tests := []struct {
		name           string
		flags0, flags1 byte
		crc0, crc1     bool
		want           State
		wantErr        error
	}{
		{"higher flags wins (copy 1)", 1, 2, true, true, s1, nil},
		{"higher flags wins (copy 0)", 7, 6, true, true, s0, nil},
		{"0x00 is newer than 0xff (wrap)", 0xff, 0x00, true, true, s1, nil},
		{"0x00 is newer than 0xff (wrap, copy 0)", 0x00, 0xff, true, true, s0, nil},
		{"equal flags pick the primary", 5, 5, true, true, s0, nil},
		{"newer copy with bad crc falls back", 1, 2, true, false, s0, nil},
		{"older copy with bad crc is ignored", 1, 2, false, true, s1, nil},
		{"primary bad crc, equal flags", 3, 3, false, true, s1, nil},
		{"both bad crc", 1, 2, false, false, State{}, ErrBadCRC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: 0x400}
			c0 := rawUBootCopy(t, 0x400, &tt.flags0, stateEnv(s0))
			c1 := rawUBootCopy(t, 0x400, &tt.flags1, stateEnv(s1))
			if !tt.crc0 {
				c0[100] ^= 0x40
			}
			if !tt.crc1 {
				c1[0] ^= 1
			}
			if err := os.WriteFile(cfg.Path, c0, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg.RedundPath, c1, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Open(durable.OS, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Load()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Load = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedundantStoreWritesOnlyTheInactiveCopy(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: 0x400}
	if err := Init(durable.OS, cfg, State{Good: SlotA}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(durable.OS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantFlags := []byte{1, 0} // after Init the primary is current
	for i, st := range storeSequence {
		before := snapshotFiles(t, dir)
		if err := c.Store(st); err != nil {
			t.Fatal(err)
		}
		after := snapshotFiles(t, dir)
		cur := 0
		if wantFlags[1] > wantFlags[0] {
			cur = 1
		}
		inactive := []string{"env0", "env1"}[1-cur]
		active := []string{"env0", "env1"}[cur]
		if !bytes.Equal(before[active], after[active]) {
			t.Fatalf("Store #%d modified the current copy %s", i, active)
		}
		wantFlags[1-cur] = wantFlags[cur] + 1
		if got := after[inactive][4]; got != wantFlags[1-cur] {
			t.Fatalf("Store #%d wrote %s with flags %d, want %d", i, inactive, got, wantFlags[1-cur])
		}
	}
}

func TestRedundantStoreRepairsCorruptCopy(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env0"), RedundPath: filepath.Join(dir, "env1"), EnvSize: 0x400}
	old := State{Good: SlotA, BootLimit: 1}
	if err := Init(durable.OS, cfg, old); err != nil {
		t.Fatal(err)
	}
	c, _ := Open(durable.OS, cfg)
	// Corrupt the current (primary) copy: Load must fall back to the other.
	raw, _ := os.ReadFile(cfg.Path)
	raw[20] ^= 0xff
	os.WriteFile(cfg.Path, raw, 0o600)
	got, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(old, got); diff != "" {
		t.Fatalf("Load with corrupt primary (-want +got):\n%s", diff)
	}
	next := State{Good: SlotA, Trial: SlotB, BootLimit: 1}
	if err := c.Store(next); err != nil {
		t.Fatal(err)
	}
	img, err := c.(*ubootControl).readCopy(0)
	if err != nil || !img.crcOK {
		t.Fatalf("Store did not rewrite the corrupt copy: crc ok %v, %v", img.crcOK, err)
	}
	if got, err := c.Load(); err != nil || !cmp.Equal(next, got) {
		t.Fatalf("Load after repair = %+v, %v; want %+v", got, err, next)
	}
}

func TestSingleCopyLoadRejectsBadCRCAndShortFile(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Backend: BackendUBootEnv, Path: filepath.Join(dir, "env"), Offset: 0x100, EnvSize: 0x400}
	if err := Init(durable.OS, cfg, State{Good: SlotA}); err != nil {
		t.Fatal(err)
	}
	c, _ := Open(durable.OS, cfg)
	raw, _ := os.ReadFile(cfg.Path)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"flipped data bit", func() []byte { b := bytes.Clone(raw); b[0x100+10] ^= 1; return b }()},
		{"flipped crc bit", func() []byte { b := bytes.Clone(raw); b[0x100] ^= 0x80; return b }()},
		{"truncated", raw[:len(raw)-1]},
		{"erased flash", bytes.Repeat([]byte{0xff}, len(raw))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(cfg.Path, tc.data, 0o600)
			if _, err := c.Load(); !errors.Is(err, ErrBadCRC) {
				t.Fatalf("Load = %v, want ErrBadCRC", err)
			}
			if err := c.Store(State{Good: SlotB}); !errors.Is(err, ErrBadCRC) {
				t.Fatalf("Store over corrupt env = %v, want ErrBadCRC", err)
			}
		})
	}
}

func TestLoadOfMissingFileFails(t *testing.T) {
	for _, cfg := range testBackends(t.TempDir()) {
		t.Run(layoutName(cfg), func(t *testing.T) {
			c, _ := Open(durable.OS, cfg)
			if _, err := c.Load(); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Load = %v, want ErrNotExist", err)
			}
			if err := c.Store(State{Good: SlotA}); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Store = %v, want ErrNotExist", err)
			}
		})
	}
}
