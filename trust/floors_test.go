package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust/trusttest"
)

// floorsRepo is a repository whose device trusts root v2, timestamp and
// snapshot v4, targets v3 and the delegated role "deleg" v2, with older
// states it had trusted before, attacks that offer an older state, and an
// honest newer state.
type floorsRepo struct {
	r       *trusttest.Repo
	root1   []byte
	roots   map[int64][]byte
	trusted map[string][]byte
	attacks map[string]map[string][]byte
	newer   map[string][]byte
}

const floorsTarget = "deleg/fw.bin"

func capture(r *trusttest.Repo) map[string][]byte {
	return map[string][]byte{
		"timestamp": r.File("timestamp.json"), "snapshot": r.File("snapshot.json"),
		"targets": r.File("targets.json"), "deleg": r.File("deleg.json"),
	}
}

func newFloorsRepo(t *testing.T) *floorsRepo {
	t.Helper()
	r := trusttest.New(farFuture)
	fr := &floorsRepo{r: r, root1: r.RootBytes(1)}
	r.Root.Signed.Version = 2
	r.PublishRoot()
	fr.roots = map[int64][]byte{1: fr.root1, 2: r.RootBytes(2)}
	r.Delegate("targets", metadata.DelegatedRole{Name: "deleg", Paths: []string{"deleg/*"}}, farFuture, trusttest.NewKey())
	r.AddTarget("targets", "top.bin", []byte("top"))
	r.AddTarget("deleg", floorsTarget, []byte("firmware 1"))
	r.BumpTargets("targets") // v2
	r.SignRole("deleg")      // v1
	r.UpdateSnapshot()       // snapshot v2, timestamp v2
	old := capture(r)
	r.BumpTargets("targets") // v3
	r.BumpTargets("deleg")   // v2
	r.UpdateSnapshot()       // snapshot v3, timestamp v3
	mid := capture(r)
	r.UpdateSnapshot() // snapshot v4, timestamp v4: same role versions
	fr.trusted = capture(r)

	// Attacks by a mirror (replays) and by a holder of the online
	// timestamp and snapshot keys (new versions listing old files).
	ts := func(v, snap int64) []byte {
		md := metadata.Timestamp(farFuture)
		md.Signed.Version = v
		md.Signed.Meta["snapshot.json"] = metadata.MetaFile(snap)
		return trusttest.Sign(md.Signed, r.Signers["timestamp"]...)
	}
	snap := func(v int64, meta map[string]int64) []byte {
		md := metadata.Snapshot(farFuture)
		md.Signed.Version = v
		md.Signed.Meta = map[string]*metadata.MetaFiles{}
		for name, mv := range meta {
			md.Signed.Meta[name] = metadata.MetaFile(mv)
		}
		return trusttest.Sign(md.Signed, r.Signers["snapshot"]...)
	}
	with := func(state map[string][]byte, kv ...any) map[string][]byte {
		out := map[string][]byte{}
		for k, v := range state {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1].([]byte)
		}
		return out
	}
	fr.attacks = map[string]map[string][]byte{
		// Replay of the state before: timestamp v3, snapshot v3.
		"older timestamp": mid,
		// A new timestamp pinning the older snapshot v3.
		"older snapshot": with(mid, "timestamp", ts(5, 3)),
		// A new snapshot listing the older targets v2.
		"older targets": with(old, "timestamp", ts(5, 5), "snapshot", snap(5, map[string]int64{"targets.json": 2, "deleg.json": 2}), "deleg", mid["deleg"]),
		// A new snapshot listing the older delegated role v1.
		"older delegated role": with(old, "timestamp", ts(5, 5), "snapshot", snap(5, map[string]int64{"targets.json": 3, "deleg.json": 1}), "targets", mid["targets"]),
		// A new snapshot that no longer lists the delegated role.
		"delegated role removed": with(mid, "timestamp", ts(5, 5), "snapshot", snap(5, map[string]int64{"targets.json": 3})),
	}

	// The honest newer state (above the attackers' versions).
	r.BumpTargets("targets") // v4
	r.Targets["deleg"].Signed.Version = 3
	r.AddTarget("deleg", floorsTarget, []byte("firmware 2"))
	r.SignRole("deleg")
	r.Snapshot.Signed.Version = 9
	r.Timestamp.Signed.Version = 9
	r.UpdateSnapshot() // snapshot v10, timestamp v10
	fr.newer = capture(r)
	return fr
}

func (fr *floorsRepo) source(state map[string][]byte) *MapSource {
	return &MapSource{Roots: fr.roots, Metadata: state}
}

// trustedStore returns a DirStore (and its directory) seeded with the
// factory root and refreshed to the trusted state, the delegated role
// looked up (so it is stored too).
func (fr *floorsRepo) trustedStore(t *testing.T) (Store, string) {
	t.Helper()
	dir := t.TempDir()
	store := NewDirStore(durable.OS, dir)
	if err := store.Put("root.json", fr.root1); err != nil {
		t.Fatal(err)
	}
	c := reopen(t, store, fr.source(fr.trusted), t0)
	mustRefresh(t, c)
	if _, err := c.Target(context.Background(), floorsTarget); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "deleg.json", floorsFile} {
		stored(t, store, name)
	}
	return store, dir
}

// lose deletes or corrupts (truncates to half) a stored file.
func lose(t *testing.T, dir, name, how string) {
	t.Helper()
	p := filepath.Join(dir, name)
	switch how {
	case "deleted":
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	case "corrupted":
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown loss %q", how)
	}
}

// refreshAndLookup refreshes and looks up the delegated target, like an
// install does.
func refreshAndLookup(store Store, src Source) (*Client, error) {
	c, err := New(store, src, Config{Now: at(t0)})
	if err != nil {
		return nil, err
	}
	if err := c.Refresh(context.Background()); err != nil {
		return c, err
	}
	_, err = c.Target(context.Background(), floorsTarget)
	return c, err
}

// TestRollbackAfterTrustedFileLost: with any one trusted file deleted or
// corrupted, every older repository state is still refused (a rollback
// error, or a corruption error for the floor record itself), and the
// honest newer state is still accepted (after the operator's recovery for
// root.json and a corrupt floor record).
func TestRollbackAfterTrustedFileLost(t *testing.T) {
	fr := newFloorsRepo(t)
	for _, file := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "deleg.json", floorsFile} {
		for _, how := range []string{"deleted", "corrupted"} {
			for attack, state := range fr.attacks {
				t.Run(file+" "+how+"/"+attack, func(t *testing.T) {
					store, dir := fr.trustedStore(t)
					lose(t, dir, file, how)
					if file == "root.json" {
						// The client cannot start without its root: the
						// operator restores the factory root (version 1).
						if _, err := New(store, fr.source(state), Config{}); err == nil {
							t.Fatal("client started without a valid root.json")
						}
						if err := store.Put("root.json", fr.root1); err != nil {
							t.Fatal(err)
						}
					}
					c, err := refreshAndLookup(store, fr.source(state))
					want := ErrRollback
					if file == floorsFile && how == "corrupted" {
						want = ErrCorruptFloors
					}
					if !errors.Is(err, want) {
						var got string
						if c != nil && c.Trusted().Snapshot != nil {
							got = fmt.Sprintf(" (trusted snapshot now v%d)", c.Trusted().Snapshot.Signed.Version)
						}
						t.Fatalf("older state after %s %s: got %v%s, want %v", file, how, err, got, want)
					}

					if want == ErrCorruptFloors {
						// Refused until the operator removes the record,
						// which is then rebuilt from the files.
						if _, err := refreshAndLookup(store, fr.source(fr.newer)); !errors.Is(err, ErrCorruptFloors) {
							t.Fatalf("newer state with a corrupt record: %v, want %v", err, ErrCorruptFloors)
						}
						if err := os.Remove(filepath.Join(dir, floorsFile)); err != nil {
							t.Fatal(err)
						}
						if _, err := refreshAndLookup(store, fr.source(state)); !errors.Is(err, ErrRollback) {
							t.Fatalf("older state after removing the corrupt record: %v, want %v", err, ErrRollback)
						}
					}
					c, err = refreshAndLookup(store, fr.source(fr.newer))
					if err != nil {
						t.Fatalf("honest newer state refused: %v", err)
					}
					if v := c.Trusted().Snapshot.Signed.Version; v != 10 {
						t.Fatalf("trusted snapshot v%d after the honest update, want v10", v)
					}
				})
			}
		}
	}
}

// TestRollbackRootAfterRootJSONLost: root.json lost and replaced by the
// factory root (version 1) while the device had trusted version 2; a
// mirror that hides root version 2 must not make the device settle on
// version 1.
func TestRollbackRootAfterRootJSONLost(t *testing.T) {
	fr := newFloorsRepo(t)
	for _, how := range []string{"deleted", "corrupted"} {
		t.Run(how, func(t *testing.T) {
			store, dir := fr.trustedStore(t)
			lose(t, dir, "root.json", how)
			if err := store.Put("root.json", fr.root1); err != nil {
				t.Fatal(err)
			}
			hidden := &MapSource{Roots: map[int64][]byte{1: fr.root1}, Metadata: fr.newer}
			c, err := refreshAndLookup(store, hidden)
			if !errors.Is(err, ErrRollback) {
				v := int64(0)
				if c != nil {
					v = c.Trusted().Root.Signed.Version
				}
				t.Fatalf("chain ending at root v%d below the trusted v2: got %v, want %v", v, err, ErrRollback)
			}
			c, err = refreshAndLookup(store, fr.source(fr.newer))
			if err != nil {
				t.Fatalf("honest state with the root chain: %v", err)
			}
			if v := c.Trusted().Root.Signed.Version; v != 2 {
				t.Fatalf("root v%d, want v2", v)
			}
		})
	}
}

// TestRollbackRecordRebuiltFromFiles: a missing record (a device upgraded
// from a version without it, or the record deleted) is rebuilt from the
// trusted files, and then protects the floors on its own when a file is
// lost.
func TestRollbackRecordRebuiltFromFiles(t *testing.T) {
	fr := newFloorsRepo(t)
	store, dir := fr.trustedStore(t)
	want := stored(t, store, floorsFile)
	lose(t, dir, floorsFile, "deleted")
	if _, err := refreshAndLookup(store, fr.source(fr.trusted)); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, store, floorsFile); !bytes.Equal(got, want) {
		t.Fatalf("rebuilt record:\n%s\nwant:\n%s", got, want)
	}
	lose(t, dir, "timestamp.json", "deleted")
	if _, err := refreshAndLookup(store, fr.source(fr.attacks["older snapshot"])); !errors.Is(err, ErrRollback) {
		t.Fatalf("older snapshot after timestamp.json deleted: %v, want %v", err, ErrRollback)
	}
}

// cutStore simulates a power cut: Puts fail from the first Put of name on.
type cutStore struct {
	Store
	name string
	cut  bool
	puts []string
}

func (s *cutStore) Put(name string, data []byte) error {
	if s.cut || name == s.name {
		s.cut = true
		return errors.New("power cut")
	}
	s.puts = append(s.puts, name)
	return s.Store.Put(name, data)
}

// TestRollbackAfterPowerCutBetweenFloorAndFile: the record is written
// before the file it covers, so a power cut between the two leaves the
// floor ahead, never behind: after it, losing the older file still does
// not let an older state in, and the honest state is accepted.
func TestRollbackAfterPowerCutBetweenFloorAndFile(t *testing.T) {
	fr := newFloorsRepo(t)
	for _, file := range []string{"timestamp.json", "snapshot.json"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			base := NewDirStore(durable.OS, dir)
			if err := base.Put("root.json", fr.root1); err != nil {
				t.Fatal(err)
			}
			// Trust the state before ("older timestamp" = timestamp and
			// snapshot v3), then cut the power while storing v4.
			mustRefresh(t, reopen(t, base, fr.source(fr.attacks["older timestamp"]), t0))
			cs := &cutStore{Store: base, name: file}
			if err := reopen(t, cs, fr.source(fr.trusted), t0).Refresh(context.Background()); err == nil {
				t.Fatal("refresh survived the power cut")
			}
			if i := strings.Index(strings.Join(cs.puts, " "), floorsFile); i < 0 {
				t.Fatalf("no floor record written before %s (puts %v)", file, cs.puts)
			}
			lose(t, dir, "timestamp.json", "deleted")
			if _, err := refreshAndLookup(base, fr.source(fr.attacks["older timestamp"])); !errors.Is(err, ErrRollback) {
				t.Fatalf("older state after the power cut: %v, want %v", err, ErrRollback)
			}
			if _, err := refreshAndLookup(base, fr.source(fr.newer)); err != nil {
				t.Fatalf("honest state after the power cut: %v", err)
			}
		})
	}
}

// TestFastForwardRecoveryWithFloorRecord: floors are bound to the keys
// that signed them. When the root rotates the timestamp and snapshot keys
// (fast-forward attack recovery, 5.3.11) the recorded floors no longer
// hold, exactly like the stored files that no longer verify, so the
// repository can restart at version 1; the same versions without the
// rotation are refused.
func TestFastForwardRecoveryWithFloorRecord(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		t.Run(map[bool]string{false: "keys kept", true: "keys rotated"}[rotate], func(t *testing.T) {
			r, src := newRepo(t)
			c, store := newClient(t, r, src, t0)
			for range 5 {
				r.UpdateSnapshot()
			}
			mustRefresh(t, c) // timestamp and snapshot v6
			if rotate {
				for _, role := range []string{"timestamp", "snapshot"} {
					old := r.Signers[role][0]
					if err := r.Root.Signed.RevokeKey(old.ID, role); err != nil {
						t.Fatal(err)
					}
					k := trusttest.NewKey()
					if err := r.Root.Signed.AddKey(k.Public, role); err != nil {
						t.Fatal(err)
					}
					r.Signers[role] = []*trusttest.Key{k}
				}
				r.Root.Signed.Version++
				r.PublishRoot()
			}
			r.Snapshot.Signed.Version = 0
			r.Timestamp.Signed.Version = 0
			r.UpdateSnapshot() // snapshot and timestamp v1
			err := c.Refresh(context.Background())
			if !rotate {
				wantErr(t, err, ErrRollback)
				return
			}
			if err != nil {
				t.Fatalf("recovery by key rotation refused: %v", err)
			}
			if v := c.Trusted().Snapshot.Signed.Version; v != 1 {
				t.Fatalf("snapshot v%d, want v1", v)
			}
			if !strings.Contains(string(stored(t, store, floorsFile)), "\nsnapshot 1 ") {
				t.Fatalf("record not reset to the recovered versions:\n%s", stored(t, store, floorsFile))
			}
		})
	}
}

func validFloors() *floors {
	return &floors{
		root: 3, timestamp: 7, tsSnapshot: 9, tsSigners: []fingerprint{{1}, {2}},
		snapshot: 9, snapSigners: []fingerprint{{3}},
		meta: map[string]int64{"targets.json": 5, "../deleg?#.json": 2, "a%b.json": 1},
	}
}

func TestFloorsRoundTrip(t *testing.T) {
	for _, f := range []*floors{{root: 1}, {root: 2, timestamp: 1, tsSnapshot: 1, tsSigners: []fingerprint{{9}}}, validFloors()} {
		data, err := f.marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseFloors(data)
		if err != nil {
			t.Fatalf("parse of marshal:\n%s\n%v", data, err)
		}
		again, err := got.marshal()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("marshal(parse(x)) != x:\n%s\n%s", data, again)
		}
	}
}

// TestFloorsRecordTampered: every alteration of a record, even one that
// keeps a well-formed line (a lowered version), is refused as corrupt.
func TestFloorsRecordTampered(t *testing.T) {
	good, err := validFloors().marshal()
	if err != nil {
		t.Fatal(err)
	}
	resum := func(body string) []byte { // a record with a correct checksum
		sum := sha256.Sum256([]byte(body))
		return []byte(body + floorsSumPrefix + hex.EncodeToString(sum[:]) + "\n")
	}
	hdr := floorsHeader + "\n"
	fp := strings.Repeat("01", 32)
	cases := map[string][]byte{
		"empty":                 nil,
		"lowered version":       bytes.Replace(good, []byte("root 3"), []byte("root 2"), 1),
		"truncated":             good[:len(good)-1],
		"trailing byte":         append(bytes.Clone(good), '\n'),
		"checksum uppercase":    bytes.ToUpper(good),
		"no header":             resum("root 1\n"),
		"no root":               resum(hdr),
		"version 0":             resum(hdr + "root 0\n"),
		"leading zero":          resum(hdr + "root 01\n"),
		"plus sign":             resum(hdr + "root +1\n"),
		"two spaces":            resum(hdr + "root  1\n"),
		"crlf":                  resum(floorsHeader + "\r\nroot 1\r\n"),
		"unsorted fingerprints": resum(hdr + "root 1\nsnapshot 1 " + strings.Repeat("02", 32) + "," + fp + "\n"),
		"repeated fingerprint":  resum(hdr + "root 1\nsnapshot 1 " + fp + "," + fp + "\n"),
		"upper hex":             resum(hdr + "root 1\nsnapshot 1 " + strings.Repeat("AB", 32) + "\n"),
		"no signers":            resum(hdr + "root 1\nsnapshot 1 \n"),
		"meta without snapshot": resum(hdr + "root 1\nmeta targets.json 1\n"),
		"meta repeated":         resum(hdr + "root 1\nsnapshot 1 " + fp + "\nmeta a 1\nmeta a 1\n"),
		"meta unsorted":         resum(hdr + "root 1\nsnapshot 1 " + fp + "\nmeta b 1\nmeta a 1\n"),
		"meta escape not only":  resum(hdr + "root 1\nsnapshot 1 " + fp + "\nmeta %61 1\n"),
		"meta escape lowercase": resum(hdr + "root 1\nsnapshot 1 " + fp + "\nmeta %2f 1\n"),
		"meta raw slash":        resum(hdr + "root 1\nsnapshot 1 " + fp + "\nmeta a/b 1\n"),
		"snapshot before ts":    resum(hdr + "root 1\nsnapshot 1 " + fp + "\ntimestamp 1 1 " + fp + "\n"),
		"unknown line":          resum(hdr + "root 1\nextra 1\n"),
		"too large":             append(bytes.Repeat([]byte("x"), MaxFloorsSize), good...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := parseFloors(data); !errors.Is(err, ErrCorruptFloors) {
				t.Fatalf("parseFloors(%q) = %v, want %v", truncate(data), err, ErrCorruptFloors)
			}
		})
	}
	// And the well-formed control parses.
	if _, err := parseFloors(resum(hdr + "root 1\nsnapshot 1 " + fp + "\nmeta %2F 1\nmeta a 1\n")); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// TestFloorsRecordUnreadable: a record the store cannot read (not a
// missing one) fails Refresh instead of being treated as absent.
func TestFloorsRecordUnreadable(t *testing.T) {
	fr := newFloorsRepo(t)
	_, dir := fr.trustedStore(t)
	p := filepath.Join(dir, floorsFile)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o755); err != nil { // a directory in its place
		t.Fatal(err)
	}
	_, err := refreshAndLookup(NewDirStore(durable.OS, dir), fr.source(fr.attacks["older snapshot"]))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unreadable record: %v, want a read error", err)
	}
}

// FuzzParseFloors: the record parser never panics, accepts exactly one
// encoding (parse then marshal gives back the input) and rejects every
// proper prefix of an accepted record.
func FuzzParseFloors(f *testing.F) {
	for _, fl := range []*floors{{root: 1}, validFloors()} {
		data, err := fl.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(floorsHeader + "\nroot 1\nsha256 00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := parseFloors(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptFloors) {
				t.Fatalf("error %v does not wrap ErrCorruptFloors", err)
			}
			return
		}
		again, err := fl.marshal()
		if err != nil {
			t.Fatalf("marshal of a parsed record: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("marshal(parse(x)) != x:\n%q\n%q", data, again)
		}
		for i := range data {
			if _, err := parseFloors(data[:i]); err == nil {
				t.Fatalf("prefix of %d bytes accepted", i)
			}
		}
	})
}
