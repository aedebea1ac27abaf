package boot

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/internal/durable"
)

// powerCutSetup provisions a Mem with an environment whose current state is
// old, reached through Init and one Store so that a redundant U-Boot
// environment has two different, valid copies.
func powerCutSetup(t *testing.T, cfg Config, first, old State) *durable.Mem {
	t.Helper()
	m := durable.NewMem()
	if err := m.MkdirAll("/boot", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Init(m, cfg, first); err != nil {
		t.Fatal(err)
	}
	c, err := Open(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(old); err != nil {
		t.Fatal(err)
	}
	m.Crash() // everything above was synced: a crash must change nothing
	return m
}

func TestStoreLeavesOldOrNewStateAtEveryPowerCut(t *testing.T) {
	first := State{Good: SlotA, BootLimit: 1}
	old := State{Good: SlotA, Trial: SlotB, BootCount: 1, BootLimit: 3, Bad: []Slot{SlotB}}
	next := State{Good: SlotB, BootLimit: 2, Bad: []Slot{SlotA}}
	configs := []Config{
		{Backend: BackendSim, Path: "/boot/state"},
		{Backend: BackendGrubEnv, Path: "/boot/grubenv"},
		{Backend: BackendUBootEnv, Path: "/boot/env0", RedundPath: "/boot/env1", EnvSize: 0x1000},
		{Backend: BackendUBootEnv, Path: "/boot/flash", RedundPath: "/boot/flash", Offset: 0x1000, EnvSize: 0x1000},
	}
	for _, cfg := range configs {
		t.Run(layoutName(cfg), func(t *testing.T) {
			m := powerCutSetup(t, cfg, first, old)
			m.CutAfter(0)
			c, _ := Open(m, cfg)
			if err := c.Store(next); err != nil {
				t.Fatal(err)
			}
			n := m.Ops()
			if n == 0 {
				t.Fatal("Store performed no write-boundary ops")
			}
			sawOld, sawNew := false, false
			for cut := 1; cut <= n; cut++ {
				// torn < 0: plain Crash; otherwise CrashTorn(torn). Many
				// seeds, since a torn prefix rarely ends inside the few
				// bytes that differ between two environments.
				for torn := int64(-1); torn <= 300; torn++ {
					t.Run(fmt.Sprintf("cut=%d/torn=%d", cut, torn), func(t *testing.T) {
						m := powerCutSetup(t, cfg, first, old)
						c, _ := Open(m, cfg)
						m.CutAfter(cut)
						if err := c.Store(next); !errors.Is(err, durable.ErrPowerCut) {
							t.Fatalf("Store with power cut = %v, want ErrPowerCut", err)
						}
						if torn < 0 {
							m.Crash()
						} else {
							m.CrashTorn(torn)
						}
						c, _ = Open(m, cfg)
						got, err := c.Load()
						if err != nil {
							t.Fatalf("Load after power cut: %v", err)
						}
						switch {
						case cmp.Equal(got, old):
							sawOld = true
						case cmp.Equal(got, next):
							sawNew = true
						default:
							t.Fatalf("Load after power cut = %+v, neither old %+v nor new %+v", got, old, next)
						}
						// The device must be able to continue: a
						// further Store works and is loaded back.
						again := State{Good: SlotA, Trial: SlotB, BootLimit: 1}
						if err := c.Store(again); err != nil {
							t.Fatalf("Store after recovery: %v", err)
						}
						if got, err := c.Load(); err != nil || !cmp.Equal(got, again) {
							t.Fatalf("Load after recovery Store = %+v, %v", got, err)
						}
					})
				}
			}
			if !sawOld {
				t.Error("no power cut left the old state: the test cannot tell an atomic Store from a non-atomic one")
			}
			if !sawNew && cfg.Backend == BackendUBootEnv {
				t.Error("no torn write completed the new copy")
			}
		})
	}
}

// TestSingleCopyUBootEnvIsNotPowerSafe documents the single-copy limitation:
// a cut during Store can leave no valid environment, and Load then reports
// ErrBadCRC rather than inventing a state.
func TestSingleCopyUBootEnvIsNotPowerSafe(t *testing.T) {
	cfg := Config{Backend: BackendUBootEnv, Path: "/boot/env", EnvSize: 0x1000}
	first := State{Good: SlotA, BootLimit: 1}
	old := State{Good: SlotA, Trial: SlotB, BootLimit: 1}
	next := State{Good: SlotB, BootLimit: 1}
	sawBadCRC := false
	for torn := int64(1); torn <= 2000 && !sawBadCRC; torn++ {
		m := powerCutSetup(t, cfg, first, old)
		c, _ := Open(m, cfg)
		m.CutAfter(2) // the Sync after the in-place write
		if err := c.Store(next); !errors.Is(err, durable.ErrPowerCut) {
			t.Fatalf("Store with power cut = %v, want ErrPowerCut", err)
		}
		m.CrashTorn(torn)
		got, err := c.Load()
		switch {
		case errors.Is(err, ErrBadCRC):
			sawBadCRC = true
		case err != nil:
			t.Fatalf("Load after torn write: %v", err)
		case !cmp.Equal(got, old) && !cmp.Equal(got, next):
			t.Fatalf("Load after torn write = %+v, neither old nor new", got)
		}
	}
	if !sawBadCRC {
		t.Error("no torn write broke the single copy; expected at least one ErrBadCRC")
	}
}

// TestRedundantUBootEnvSurvivesEveryTornPrefix tears the in-place write of a
// redundant Store at every byte: whatever prefix of the new copy reached the
// flash, Load returns the old or the new State.
func TestRedundantUBootEnvSurvivesEveryTornPrefix(t *testing.T) {
	const size = 0x400
	cfg := Config{Backend: BackendUBootEnv, Path: "/boot/env0", RedundPath: "/boot/env1", EnvSize: size}
	first := State{Good: SlotB, BootLimit: 1}
	old := State{Good: SlotA, Trial: SlotB, BootCount: 1, BootLimit: 3, Bad: []Slot{SlotB}}
	next := State{Good: SlotB, BootLimit: 2, Bad: []Slot{SlotA}}
	m := powerCutSetup(t, cfg, first, old)
	before, _ := m.Snapshot("/boot/env0") // the inactive copy (holds first)
	c, _ := Open(m, cfg)
	if err := c.Store(next); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Snapshot("/boot/env0")
	if bytes.Equal(before, after) {
		t.Fatal("Store did not write env0, the inactive copy")
	}
	for n := 0; n <= size; n++ {
		torn := append(bytes.Clone(after[:n]), before[n:]...)
		if err := m.WriteFileRaw("/boot/env0", torn, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := c.Load()
		if err != nil {
			t.Fatalf("torn after %d bytes: Load: %v", n, err)
		}
		if !cmp.Equal(got, old) && !cmp.Equal(got, next) {
			t.Fatalf("torn after %d bytes: Load = %+v, neither old nor new", n, got)
		}
	}
}
