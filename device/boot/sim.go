package boot

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/airlockfw/airlock/internal/durable"
)

// MaxSimStateSize bounds the sim backend's state file.
const MaxSimStateSize = 512

// simHeader is the first line of a sim state file; it names the format
// version.
const simHeader = "airlock boot state v1"

// simKeys are the sim state file's keys, in their only accepted order.
var simKeys = []string{"good", "trial", "bootcount", "bootlimit", "bad"}

// simControl is the "sim" backend: a small text file replaced atomically by
// durable.WriteFile. Its one encoding is:
//
//	airlock boot state v1
//	good=A
//	trial=B
//	bootcount=0
//	bootlimit=1
//	bad=
//
// with every line (including the last) ending in "\n".
type simControl struct {
	fsys durable.FS
	path string
}

func (c *simControl) Name() string { return BackendSim }

func (c *simControl) Load() (State, error) {
	data, err := durable.ReadFile(c.fsys, c.path, MaxSimStateSize)
	if err != nil {
		return State{}, fmt.Errorf("failed to read sim boot state: %w", err)
	}
	return parseSim(data)
}

func (c *simControl) Store(st State) error {
	if err := st.Validate(); err != nil {
		return err
	}
	// Like the other backends, Store updates an existing state; creating
	// one is Init's job.
	if _, err := c.fsys.Stat(c.path); err != nil {
		return fmt.Errorf("failed to find sim boot state (provision it with Init): %w", err)
	}
	return c.write(st)
}

func (c *simControl) write(st State) error {
	if err := durable.WriteFile(c.fsys, c.path, marshalSim(st.normalized()), 0o644); err != nil {
		return fmt.Errorf("failed to write sim boot state: %w", err)
	}
	return nil
}

func marshalSim(st State) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\ngood=%s\ntrial=%s\nbootcount=%d\nbootlimit=%d\nbad=%s\n",
		simHeader, st.Good, st.Trial, st.BootCount, st.BootLimit, slotList(st.Bad))
	return b.Bytes()
}

// parseSim parses the one encoding marshalSim produces.
func parseSim(data []byte) (State, error) {
	if len(data) > MaxSimStateSize {
		return State{}, syntaxErr(BackendSim, MaxSimStateSize, "state longer than %d bytes", MaxSimStateSize)
	}
	s := string(data)
	off := 0
	line := func() (string, bool) {
		i := strings.IndexByte(s[off:], '\n')
		if i < 0 {
			return "", false
		}
		l := s[off : off+i]
		off += i + 1
		return l, true
	}
	if l, ok := line(); !ok || l != simHeader {
		return State{}, syntaxErr(BackendSim, 0, "first line is not %q", simHeader)
	}
	vals := make([]string, len(simKeys))
	for i, k := range simKeys {
		start := off
		l, ok := line()
		if !ok {
			return State{}, syntaxErr(BackendSim, start, "truncated before %q line", k)
		}
		v, ok := strings.CutPrefix(l, k+"=")
		if !ok {
			return State{}, syntaxErr(BackendSim, start, "line %q is not %q", l, k+"=...")
		}
		vals[i] = v
	}
	if off != len(s) {
		return State{}, syntaxErr(BackendSim, off, "trailing data after the last line")
	}
	var st State
	var ok bool
	if st.Good, ok = parseSlot(vals[0], SlotA, SlotB); !ok {
		return State{}, syntaxErr(BackendSim, 0, "good=%q is not A or B", vals[0])
	}
	if vals[1] != "" {
		if st.Trial, ok = parseSlot(vals[1], SlotA, SlotB); !ok {
			return State{}, syntaxErr(BackendSim, 0, "trial=%q is not A, B or empty", vals[1])
		}
	}
	if st.BootCount, ok = parseCounter(vals[2]); !ok {
		return State{}, syntaxErr(BackendSim, 0, "bootcount=%q is not a canonical decimal number", vals[2])
	}
	if st.BootLimit, ok = parseCounter(vals[3]); !ok || st.BootLimit == 0 {
		return State{}, syntaxErr(BackendSim, 0, "bootlimit=%q is not a canonical decimal number >= 1", vals[3])
	}
	if st.Bad, ok = parseSlotList(vals[4]); !ok {
		return State{}, syntaxErr(BackendSim, 0, "bad=%q is not a sorted list of A and B without duplicates", vals[4])
	}
	if err := st.Validate(); err != nil {
		return State{}, fmt.Errorf("sim: stored state: %w (%w)", err, ErrCorrupt)
	}
	return st, nil
}
