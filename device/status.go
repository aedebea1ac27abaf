package device

import (
	"slices"

	"github.com/airlockfw/airlock/device/boot"
)

// Status is a summary of the device for `airlock device status`.
type Status struct {
	Model    string       `json:"model"`
	HWRev    uint32       `json:"hw_rev"`
	Product  string       `json:"product"`
	Channel  string       `json:"channel"`
	Counter  uint64       `json:"anti_rollback_counter"`
	Boot     BootState    `json:"boot"`
	Slots    []SlotStatus `json:"slots"`
	Booted   *Booted      `json:"booted,omitempty"`
	Last     *Result      `json:"last,omitempty"`
	Problems []string     `json:"problems,omitempty"` // state that could not be read
}

// BootState is the boot control state.
type BootState struct {
	Backend   string      `json:"backend"`
	Good      boot.Slot   `json:"good"`
	Trial     boot.Slot   `json:"trial,omitempty"`
	BootCount int         `json:"boot_count"`
	BootLimit int         `json:"boot_limit"`
	Bad       []boot.Slot `json:"bad,omitempty"`
	Next      boot.Slot   `json:"next"`
}

// SlotStatus describes one slot from its record (not re-verified: run Boot
// for that).
type SlotStatus struct {
	Slot            boot.Slot `json:"slot"`
	Path            string    `json:"path"`
	Role            string    `json:"role"`   // good, trial, bad, inactive
	Status          string    `json:"status"` // installed, committed, invalid, empty
	Version         string    `json:"version,omitempty"`
	SecurityVersion uint32    `json:"security_version,omitempty"`
	TargetPath      string    `json:"target_path,omitempty"`
	Reason          string    `json:"reason,omitempty"`
}

// Status reads the device state. Parts that cannot be read are reported in
// Problems rather than failing the whole status.
func (d *Device) Status() *Status {
	s := &Status{Model: d.cfg.Model, HWRev: d.cfg.HWRev, Product: d.cfg.Product, Channel: d.cfg.Channel}
	problem := func(err error) { s.Problems = append(s.Problems, err.Error()) }
	if c, err := d.ctr.Read(); err != nil {
		problem(err)
	} else {
		s.Counter = c
	}
	st, err := d.ctl.Load()
	if err != nil {
		problem(err)
	} else {
		s.Boot = BootState{Backend: d.ctl.Name(), Good: st.Good, Trial: st.Trial, BootCount: st.BootCount,
			BootLimit: st.BootLimit, Bad: st.Bad, Next: st.Next()}
	}
	slots := []boot.Slot{boot.SlotA, boot.SlotB}
	if d.cfg.Slots.Recovery != "" {
		slots = append(slots, boot.SlotRecovery)
	}
	for _, sl := range slots {
		p, _ := d.slotPath(sl)
		ss := SlotStatus{Slot: sl, Path: p, Status: "empty", Role: "inactive"}
		switch {
		case slices.Contains(st.Bad, sl):
			ss.Role = "bad"
		case sl == st.Trial:
			ss.Role = "trial"
		case sl == st.Good:
			ss.Role = "good"
		case sl == boot.SlotRecovery:
			ss.Role = "recovery"
		}
		rec, err := d.SlotRecord(sl)
		if err != nil {
			problem(err)
		} else if rec != nil {
			ss.Status, ss.Version, ss.SecurityVersion, ss.TargetPath, ss.Reason = rec.Status, rec.Version, rec.SecurityVersion, rec.TargetPath, rec.Reason
		}
		s.Slots = append(s.Slots, ss)
	}
	if b, err := d.Booted(); err != nil {
		problem(err)
	} else {
		s.Booted = b
	}
	if l, err := d.LastResult(); err != nil {
		problem(err)
	} else {
		s.Last = l
	}
	return s
}
