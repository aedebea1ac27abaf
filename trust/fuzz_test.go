package trust

import (
	"context"
	"testing"

	"github.com/airlockfw/airlock/trust/trusttest"
)

// FuzzRefresh feeds arbitrary bytes as root version 2, timestamp, snapshot
// and targets to a client over MapSource: Refresh and Target must never
// panic, and whatever they accept must be consistent.
func FuzzRefresh(f *testing.F) {
	r := trusttest.New(farFuture)
	r.AddTarget("targets", "fw.img", []byte("x"))
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	root1 := r.RootBytes(1)
	f.Add([]byte{}, r.File("timestamp.json"), r.File("2.snapshot.json"), r.File("2.targets.json"))
	f.Add(root1, r.File("timestamp.json"), r.File("2.snapshot.json"), r.File("2.targets.json"))
	f.Add([]byte(`{"signed":{"_type":"root","a":1,"a":2},"signatures":[]}`), []byte(`{}`), []byte(`[]`), []byte(`{"signed":1.5}`))
	f.Fuzz(func(t *testing.T, root2, timestamp, snapshot, targets []byte) {
		src := &MapSource{
			Roots:    map[int64][]byte{2: root2},
			Metadata: map[string][]byte{"timestamp": timestamp, "snapshot": snapshot, "targets": targets},
		}
		if len(root2) == 0 {
			delete(src.Roots, 2)
		}
		store := NewMemStore()
		if err := store.Put("root.json", root1); err != nil {
			t.Fatal(err)
		}
		c, err := New(store, src, Config{Now: at(t0)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Refresh(context.Background()); err != nil {
			return
		}
		tr := c.Trusted()
		if tr.Timestamp == nil || tr.Snapshot == nil || tr.Targets == nil {
			t.Fatal("Refresh succeeded without trusted top-level metadata")
		}
		c.Target(context.Background(), "fw.img")
	})
}

func FuzzDecodeStrict(f *testing.F) {
	r := trusttest.New(farFuture)
	f.Add(r.RootBytes(1))
	f.Add([]byte(`{"a":[1,{"b":null}],"c":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p1, err := signedPayload(data)
		if err != nil {
			return
		}
		// The canonical form is a fixed point.
		v, err := decodeStrict(p1)
		if err != nil {
			t.Fatalf("canonical output does not parse: %v", err)
		}
		_ = v
	})
}
