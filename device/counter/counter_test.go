package counter

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/google/go-cmp/cmp"
)

const memPath = "/state/counter"

func newMem(t *testing.T) *durable.Mem {
	t.Helper()
	m := durable.NewMem()
	if err := m.MkdirAll("/state", 0o700); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustOpen(t *testing.T, fsys durable.FS, path string) *File {
	t.Helper()
	c, err := OpenFile(fsys, path)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	return c
}

func mustRead(t *testing.T, c Counter) uint64 {
	t.Helper()
	v, err := c.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return v
}

// TestFileFormatGolden pins the on-disk format: a change here breaks every
// deployed device's counter.
func TestFileFormatGolden(t *testing.T) {
	tests := []struct {
		v    uint64
		want string
	}{
		// Computed independently (Python, bitwise CRC-32C).
		{0, "4149524c4b43545200010000000000000000000086851120"},
		{1, "4149524c4b43545200010000000000000000000174ee9223"},
		{0xfffffffffffffffe, "4149524c4b43545200010000fffffffffffffffeb0a16b6e"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.v), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, hex.EncodeToString(marshal(tt.v))); diff != "" {
				t.Errorf("marshal(%d) (-want +got):\n%s", tt.v, diff)
			}
		})
	}
}

func TestRaiseIsMonotonic(t *testing.T) {
	tests := []struct {
		name    string
		raises  []uint64
		want    uint64
		wantErr []bool // per raise: want ErrDecrease
	}{
		{"starts at zero", nil, 0, nil},
		{"increasing", []uint64{1, 2, 10}, 10, []bool{false, false, false}},
		{"equal is a no-op", []uint64{3, 3}, 3, []bool{false, false}},
		{"decrease refused", []uint64{5, 4}, 5, []bool{false, true}},
		{"decrease to zero refused", []uint64{1, 0}, 1, []bool{false, true}},
		{"max value", []uint64{^uint64(0), 1}, ^uint64(0), []bool{false, true}},
	}
	backends := map[string]func(t *testing.T) (durable.FS, string){
		"Mem": func(t *testing.T) (durable.FS, string) { return newMem(t), memPath },
		"OS":  func(t *testing.T) (durable.FS, string) { return durable.OS, filepath.Join(t.TempDir(), "counter") },
	}
	for bname, newFS := range backends {
		for _, tt := range tests {
			t.Run(bname+"/"+tt.name, func(t *testing.T) {
				fsys, path := newFS(t)
				c := mustOpen(t, fsys, path)
				for i, v := range tt.raises {
					before := mustRead(t, c)
					err := c.Raise(v)
					if got := errors.Is(err, ErrDecrease); got != tt.wantErr[i] {
						t.Fatalf("Raise(%d) = %v, want ErrDecrease: %v", v, err, tt.wantErr[i])
					}
					if err != nil && !tt.wantErr[i] {
						t.Fatalf("Raise(%d): %v", v, err)
					}
					if err != nil && mustRead(t, c) != before {
						t.Fatalf("refused Raise(%d) changed the counter", v)
					}
				}
				if got := mustRead(t, c); got != tt.want {
					t.Errorf("Read = %d, want %d", got, tt.want)
				}
				// The value persists across a reopen (a reboot).
				if got := mustRead(t, mustOpen(t, fsys, path)); got != tt.want {
					t.Errorf("after reopen Read = %d, want %d", got, tt.want)
				}
			})
		}
	}
}

func TestOpenFileCreatesDurableZero(t *testing.T) {
	m := newMem(t)
	mustOpen(t, m, memPath)
	m.Crash()
	b, err := m.Snapshot(memPath)
	if err != nil {
		t.Fatalf("counter file lost by a crash right after OpenFile: %v", err)
	}
	if v, err := parse(b); err != nil || v != 0 {
		t.Errorf("after crash: %d, %v, want 0", v, err)
	}
}

func TestOpenFileMissingDirFails(t *testing.T) {
	if _, err := OpenFile(durable.NewMem(), "/nodir/counter"); err == nil {
		t.Error("OpenFile in a missing directory succeeded")
	}
}

// TestRaiseNeverLowersOrCorruptsUnderPowerCut cuts power at every write
// boundary of Raise, crashes (plain and with torn writes), reboots and checks
// the counter holds the old or the new value: never lower, never corrupt.
func TestRaiseNeverLowersOrCorruptsUnderPowerCut(t *testing.T) {
	const old, next = 5, 9
	setup := func(t *testing.T) *durable.Mem {
		m := newMem(t)
		if err := mustOpen(t, m, memPath).Raise(old); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := setup(t)
	c := mustOpen(t, m, memPath)
	m.CutAfter(0)
	if err := c.Raise(next); err != nil {
		t.Fatal(err)
	}
	n := m.Ops()
	if n == 0 {
		t.Fatal("Raise performed no write-boundary ops")
	}
	for cut := 1; cut <= n; cut++ {
		for _, torn := range []int64{-1, 0, 1, 2, 3, 4, 5, 6, 7} {
			t.Run(fmt.Sprintf("cut=%d/torn=%d", cut, torn), func(t *testing.T) {
				m := setup(t)
				c := mustOpen(t, m, memPath)
				m.CutAfter(cut)
				if err := c.Raise(next); !errors.Is(err, durable.ErrPowerCut) {
					t.Fatalf("Raise with power cut = %v, want ErrPowerCut", err)
				}
				if torn < 0 {
					m.Crash()
				} else {
					m.CrashTorn(torn)
				}
				c, err := OpenFile(m, memPath) // reboot
				if err != nil {
					t.Fatalf("OpenFile after crash: %v", err)
				}
				got := mustRead(t, c)
				if got != old && got != next {
					t.Fatalf("after crash counter = %d, want %d or %d", got, old, next)
				}
				ents, err := m.ReadDir("/state")
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) != 1 {
					t.Errorf("stale files after reboot: %v", ents)
				}
				// The device keeps working: the retried Raise succeeds.
				if err := c.Raise(next); err != nil || mustRead(t, c) != next {
					t.Errorf("retried Raise: %v", err)
				}
			})
		}
	}
}

func corruptions() map[string][]byte {
	valid := marshal(7)
	flip := func(i int) []byte {
		b := append([]byte(nil), valid...)
		b[i] ^= 0x01
		return b
	}
	reencode := func(mut func([]byte)) []byte { // mutate, then fix the CRC
		b := append([]byte(nil), valid...)
		mut(b)
		binary.BigEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
		return b
	}
	cs := map[string][]byte{
		"empty":         {},
		"truncated":     valid[:FileSize-1],
		"trailing byte": append(append([]byte(nil), valid...), 0),
		"too large":     make([]byte, 4096),
		"bad magic":     reencode(func(b []byte) { b[0] = 'X' }),
		"version 2":     reencode(func(b []byte) { b[9] = 2 }),
		"version 0":     reencode(func(b []byte) { b[9] = 0 }),
		"reserved set":  reencode(func(b []byte) { b[11] = 1 }),
		"zeroed":        make([]byte, FileSize),
		"text zero":     []byte("0\n"),
	}
	for i := range FileSize {
		cs[fmt.Sprintf("bit flip in byte %d", i)] = flip(i)
	}
	return cs
}

// TestCorruptFileFailsClosed checks that a damaged counter file is an
// ErrCorrupt error on open, read and raise, is never treated as 0 and is
// never overwritten.
func TestCorruptFileFailsClosed(t *testing.T) {
	for name, data := range corruptions() {
		t.Run(name, func(t *testing.T) {
			m := newMem(t)
			c := mustOpen(t, m, memPath)
			if err := m.WriteFileRaw(memPath, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Read = %v, want ErrCorrupt", err)
			}
			if err := c.Raise(1000); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Raise = %v, want ErrCorrupt", err)
			}
			if _, err := OpenFile(m, memPath); !errors.Is(err, ErrCorrupt) {
				t.Errorf("OpenFile = %v, want ErrCorrupt", err)
			}
			got, _ := m.Snapshot(memPath)
			if diff := cmp.Diff(data, got); diff != "" {
				t.Errorf("corrupt file was rewritten (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadMissingFileIsNotExist(t *testing.T) {
	m := newMem(t)
	c := mustOpen(t, m, memPath)
	if err := m.Remove(memPath); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read = %v, want fs.ErrNotExist", err)
	}
	if err := c.Raise(1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Raise = %v, want fs.ErrNotExist (must not recreate)", err)
	}
}

func TestParseRejectsEveryPrefix(t *testing.T) {
	valid := marshal(42)
	for i := range len(valid) {
		if _, err := parse(valid[:i]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parse of %d-byte prefix = %v, want ErrCorrupt", i, err)
		}
	}
	if v, err := parse(valid); err != nil || v != 42 {
		t.Errorf("parse(valid) = %d, %v", v, err)
	}
}

// FuzzParse checks that parse never panics, that anything it accepts
// re-encodes to the same bytes (one encoding per value), and that anything it
// rejects wraps ErrCorrupt.
func FuzzParse(f *testing.F) {
	for _, v := range []uint64{0, 1, 7, 1 << 32, ^uint64(0)} {
		f.Add(marshal(v))
	}
	for _, b := range corruptions() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parse(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if got := marshal(v); string(got) != string(b) {
			t.Fatalf("parse accepted %x as %d, which encodes as %x", b, v, got)
		}
	})
}
