package boot

import (
	"fmt"
	"strings"
)

// Variable names shared by the "uboot-env" and "grubenv" backends. boot_slot,
// upgrade_available, bootcount and bootlimit are what boot scripts read;
// the airlock_* variables keep the rest of State.
const (
	VarBootSlot         = "boot_slot"         // State.Next() at Store time: "A", "B" or "R"
	VarUpgradeAvailable = "upgrade_available" // "1" while a trial is pending, else "0"
	VarBootCount        = "bootcount"         // State.BootCount, decimal
	VarBootLimit        = "bootlimit"         // State.BootLimit, decimal, >= 1
	VarGood             = "airlock_good"      // State.Good
	VarTrial            = "airlock_trial"     // State.Trial; absent (or empty) when none
	VarBad              = "airlock_bad"       // State.Bad joined by ","; absent (or empty) when none
)

// envVar is one name=value pair of a boot environment.
type envVar struct{ name, value string }

// env is an ordered boot environment. Order is preserved so that a Store
// changes only what it must.
type env struct{ vars []envVar }

func newEnv() *env { return &env{} }

func (e *env) get(name string) (string, bool) {
	for _, v := range e.vars {
		if v.name == name {
			return v.value, true
		}
	}
	return "", false
}

func (e *env) set(name, value string) {
	for i, v := range e.vars {
		if v.name == name {
			e.vars[i].value = value
			return
		}
	}
	e.vars = append(e.vars, envVar{name, value})
}

func (e *env) unset(name string) {
	for i, v := range e.vars {
		if v.name == name {
			e.vars = append(e.vars[:i], e.vars[i+1:]...)
			return
		}
	}
}

// checkName applies the rules shared by all formats: 1..MaxNameLen printable
// ASCII bytes other than space and '='.
func checkName(name string) string {
	if name == "" {
		return "empty variable name"
	}
	if len(name) > MaxNameLen {
		return fmt.Sprintf("variable name longer than %d bytes", MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || c == '=' {
			return fmt.Sprintf("variable name %q contains byte 0x%02x", name, c)
		}
	}
	return ""
}

// checkValue applies the rules shared by all formats.
func checkValue(name, value string) string {
	if len(value) > MaxValueLen {
		return fmt.Sprintf("value of %q longer than %d bytes", name, MaxValueLen)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Sprintf("value of %q contains a NUL byte", name)
	}
	return ""
}

// parseCounter parses a strictly decimal counter: digits only, no sign, no
// leading zero (except "0" itself), at most MaxBootCounter.
func parseCounter(s string) (int, bool) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > MaxBootCounter {
		return 0, false
	}
	return n, true
}

func parseSlot(s string, allowed ...Slot) (Slot, bool) {
	for _, a := range allowed {
		if s == string(a) {
			return a, true
		}
	}
	return "", false
}

// parseSlotList parses "A", "B" or "A,B" (sorted, unique); "" is no slots.
func parseSlotList(s string) ([]Slot, bool) {
	if s == "" {
		return nil, true
	}
	var out []Slot
	for _, f := range strings.Split(s, ",") {
		sl, ok := parseSlot(f, SlotA, SlotB)
		if !ok || (len(out) > 0 && out[len(out)-1] >= sl) {
			return nil, false
		}
		out = append(out, sl)
	}
	return out, true
}

// stateFromEnv decodes the State from e, strictly.
func stateFromEnv(format string, e *env) (State, error) {
	need := func(name string) (string, error) {
		v, ok := e.get(name)
		if !ok {
			return "", fmt.Errorf("%s: variable %q: %w", format, name, ErrMissingVariable)
		}
		return v, nil
	}
	bad := func(name, value, want string) error {
		return fmt.Errorf("%s: variable %s=%q is not %s: %w", format, name, value, want, ErrCorrupt)
	}
	var st State
	v, err := need(VarGood)
	if err != nil {
		return State{}, err
	}
	if st.Good, _ = parseSlot(v, SlotA, SlotB); st.Good == "" {
		return State{}, bad(VarGood, v, `"A" or "B"`)
	}
	if v, ok := e.get(VarTrial); ok && v != "" {
		if st.Trial, _ = parseSlot(v, SlotA, SlotB); st.Trial == "" {
			return State{}, bad(VarTrial, v, `"A", "B" or empty`)
		}
	}
	if v, err = need(VarBootCount); err != nil {
		return State{}, err
	}
	var ok bool
	if st.BootCount, ok = parseCounter(v); !ok {
		return State{}, bad(VarBootCount, v, "a canonical decimal number")
	}
	if v, err = need(VarBootLimit); err != nil {
		return State{}, err
	}
	if st.BootLimit, ok = parseCounter(v); !ok || st.BootLimit == 0 {
		return State{}, bad(VarBootLimit, v, "a canonical decimal number >= 1")
	}
	if v, ok := e.get(VarBad); ok {
		if st.Bad, ok = parseSlotList(v); !ok {
			return State{}, bad(VarBad, v, `a sorted list of "A" and "B" without duplicates`)
		}
	}
	if v, err = need(VarUpgradeAvailable); err != nil {
		return State{}, err
	}
	if want := upgradeAvailable(st); v != want {
		return State{}, bad(VarUpgradeAvailable, v, fmt.Sprintf("%q (trial slot is %q)", want, st.Trial))
	}
	// boot_slot is derived (Next at Store time); the bootloader may have
	// advanced bootcount since, so it is checked for syntax only.
	if v, err = need(VarBootSlot); err != nil {
		return State{}, err
	}
	if _, ok := parseSlot(v, SlotA, SlotB, SlotRecovery); !ok {
		return State{}, bad(VarBootSlot, v, `"A", "B" or "R"`)
	}
	if err := st.Validate(); err != nil {
		return State{}, fmt.Errorf("%s: stored state: %w (%w)", format, err, ErrCorrupt)
	}
	return st, nil
}

func upgradeAvailable(st State) string {
	if st.Trial != "" {
		return "1"
	}
	return "0"
}

// applyState writes st (already validated and normalized) into e, leaving
// every other variable untouched.
func applyState(e *env, st State) {
	e.set(VarBootSlot, string(st.Next()))
	e.set(VarUpgradeAvailable, upgradeAvailable(st))
	e.set(VarBootCount, fmt.Sprint(st.BootCount))
	e.set(VarBootLimit, fmt.Sprint(st.BootLimit))
	e.set(VarGood, string(st.Good))
	if st.Trial != "" {
		e.set(VarTrial, string(st.Trial))
	} else {
		e.unset(VarTrial)
	}
	if len(st.Bad) > 0 {
		e.set(VarBad, slotList(st.Bad))
	} else {
		e.unset(VarBad)
	}
}
