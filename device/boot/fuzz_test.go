package boot

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var fuzzStates = []State{
	{Good: SlotA, BootLimit: 1},
	{Good: SlotA, Trial: SlotB, BootCount: 2, BootLimit: 3, Bad: []Slot{SlotB}},
	{Good: SlotB, BootLimit: 7, Bad: []Slot{SlotA, SlotB}},
}

// FuzzUBootData checks that parseUBootData never panics, that what it
// accepts re-encodes to an environment it parses identically, and that a
// valid environment's every strict prefix is rejected.
func FuzzUBootData(f *testing.F) {
	for _, st := range fuzzStates {
		buf := make([]byte, 256)
		if err := marshalUBootData(buf, foreignEnv(st)); err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add(make([]byte, 8))
	f.Add([]byte("a=1\x00b=\x00\x00\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseUBootData(data)
		if err != nil {
			return
		}
		_, _ = stateFromEnv(BackendUBootEnv, e)
		out := make([]byte, len(data))
		if err := marshalUBootData(out, e); err != nil {
			t.Fatalf("accepted environment does not re-encode: %v", err)
		}
		e2, err := parseUBootData(out)
		if err != nil {
			t.Fatalf("re-encoded environment rejected: %v", err)
		}
		if !cmp.Equal(e.vars, e2.vars, cmp.AllowUnexported(envVar{})) {
			t.Fatalf("re-encoding changed variables: %q vs %q", e.vars, e2.vars)
		}
		// The end marker is the last non-padding byte; cutting before it
		// must be rejected (no valid prefix of the entry list).
		end := bytes.Index(out, []byte{0, 0})
		if len(e.vars) == 0 {
			end = -1
		}
		for i := 0; i <= end; i++ {
			if _, err := parseUBootData(out[:i]); err == nil {
				t.Fatalf("prefix of %d bytes accepted", i)
			}
		}
	})
}

// FuzzGrubEnv checks that parseGrubEnv never panics and that what it accepts
// re-encodes to exactly the same bytes (one encoding per environment).
func FuzzGrubEnv(f *testing.F) {
	for _, st := range fuzzStates {
		for _, warn := range []bool{false, true} {
			data, err := marshalGrubEnv(&grubBlock{warning: warn, env: foreignEnv(st)})
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseGrubEnv(data)
		if err != nil {
			return
		}
		_, _ = stateFromEnv(BackendGrubEnv, b.env)
		out, err := marshalGrubEnv(b)
		if err != nil {
			t.Fatalf("accepted block does not re-encode: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n got %q\nwant %q", out, data)
		}
		for _, n := range []int{0, len(data) / 2, len(data) - 1} {
			if _, err := parseGrubEnv(data[:n]); err == nil {
				t.Fatalf("prefix of %d bytes accepted", n)
			}
		}
	})
}

// FuzzSimState checks that parseSim never panics, accepts only the canonical
// encoding (parse then marshal gives the same bytes) and rejects every
// strict prefix.
func FuzzSimState(f *testing.F) {
	for _, st := range fuzzStates {
		f.Add(marshalSim(st))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseSim(data)
		if err != nil {
			return
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
		if out := marshalSim(st); !bytes.Equal(out, data) {
			t.Fatalf("non-canonical encoding accepted:\n got %q\nwant %q", data, out)
		}
		for i := range data {
			if _, err := parseSim(data[:i]); err == nil {
				t.Fatalf("prefix of %d bytes accepted", i)
			}
		}
	})
}
