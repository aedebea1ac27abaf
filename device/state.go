package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
)

// State file limits and names.
const (
	// RecordFormat is the only format version of the state records.
	RecordFormat = 1
	// MaxSlotRecordSize bounds a slot record (it carries the root chain and
	// the targets metadata of its release).
	MaxSlotRecordSize = 32 << 20
	// MaxSmallRecordSize bounds booted.json and last.json.
	MaxSmallRecordSize = 16 << 10
	// MaxStoredRoots bounds the number of root versions kept in roots/.
	MaxStoredRoots = 1024

	trustDir    = "trust"
	rootsDir    = "roots"
	counterFile = "counter"
	bootedFile  = "booted.json"
	lastFile    = "last.json"
)

// Slot record statuses.
const (
	StatusInstalled = "installed" // written and verified, on trial or not yet committed
	StatusCommitted = "committed" // passed its health check
	StatusInvalid   = "invalid"   // being written, failed verification or health
)

// ErrCorruptState is wrapped when a state file does not parse.
var ErrCorruptState = errors.New("corrupt device state file")

// Role is a delegated targets role's signed metadata, as stored.
type Role struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// SlotRecord is the verified metadata stored beside a slot: everything the
// boot verifier needs to re-verify the slot from the factory root. The
// informational fields (Version, SecurityVersion, Installed*) are for status
// output; boot re-derives them from the signed metadata.
type SlotRecord struct {
	Format          int       `json:"format"`
	Slot            boot.Slot `json:"slot"`
	Status          string    `json:"status"`
	Reason          string    `json:"reason,omitempty"`
	TargetPath      string    `json:"target_path,omitempty"`
	Version         string    `json:"version,omitempty"`
	SecurityVersion uint32    `json:"security_version,omitempty"`
	InstalledLength int64     `json:"installed_length,omitempty"`
	InstalledSHA256 string    `json:"installed_sha256,omitempty"`
	Custom          []byte    `json:"custom,omitempty"`     // the target's custom field, as signed
	RootChain       [][]byte  `json:"root_chain,omitempty"` // factory+1..N root metadata
	Targets         []byte    `json:"targets,omitempty"`
	Delegated       []Role    `json:"delegated,omitempty"`
	Time            time.Time `json:"time"`
}

// Booted records the outcome of the last Boot: what it booted, or, when
// Failed, that no slot booted (Slot is then empty and Reason says why), so
// that a failed boot never leaves an earlier successful one on record.
type Booted struct {
	Format  int       `json:"format"`
	Slot    boot.Slot `json:"slot"`
	Trial   bool      `json:"trial"`
	Version string    `json:"version,omitempty"`
	Reason  string    `json:"reason"`
	// Failed is set when the boot failed: no slot verified (or the boot
	// control could not be read or written).
	Failed bool `json:"failed,omitempty"`
	// Fallbacks lists, in order, the slots the boot skipped and why.
	Fallbacks []string  `json:"fallbacks,omitempty"`
	Time      time.Time `json:"time"`
}

// Result is the outcome of the last device operation, for status.
type Result struct {
	Format    int       `json:"format"`
	Operation string    `json:"operation"` // install, boot, health, init
	OK        bool      `json:"ok"`
	Slot      boot.Slot `json:"slot,omitempty"`
	Version   string    `json:"version,omitempty"`
	Message   string    `json:"message"`
	Time      time.Time `json:"time"`
}

func (d *Device) statePath(elem ...string) string {
	return path.Join(append([]string{d.cfg.Path(d.cfg.StateDir)}, elem...)...)
}

func slotRecordName(s boot.Slot) string { return "slot-" + string(s) + ".json" }

func readRecord(fsys durable.FS, name string, max int64, v any) error {
	data, err := durable.ReadFile(fsys, name, max)
	if err != nil {
		return err
	}
	if err := (strictjson.Limits{Size: max}).Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptState, name, err)
	}
	return nil
}

func writeRecord(fsys durable.FS, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("internal error: failed to encode %s: %w", name, err)
	}
	data = append(data, '\n')
	if err := durable.WriteFile(fsys, name, data, 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", name, err)
	}
	return nil
}

// SlotRecord reads the record of slot s. A missing record is returned as
// nil, nil.
func (d *Device) SlotRecord(s boot.Slot) (*SlotRecord, error) {
	var r SlotRecord
	err := readRecord(d.fsys, d.statePath(slotRecordName(s)), MaxSlotRecordSize, &r)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.Format != RecordFormat || r.Slot != s {
		return nil, fmt.Errorf("%w: slot record of %s has format %d slot %q", ErrCorruptState, s, r.Format, r.Slot)
	}
	switch r.Status {
	case StatusInstalled, StatusCommitted, StatusInvalid:
	default:
		return nil, fmt.Errorf("%w: slot record of %s has status %q", ErrCorruptState, s, r.Status)
	}
	return &r, nil
}

func (d *Device) writeSlotRecord(r *SlotRecord) error {
	r.Format = RecordFormat
	r.Time = d.now()
	return writeRecord(d.fsys, d.statePath(slotRecordName(r.Slot)), r)
}

// invalidateSlot durably marks slot s invalid (keeping nothing else).
func (d *Device) invalidateSlot(s boot.Slot, reason string) error {
	return d.writeSlotRecord(&SlotRecord{Slot: s, Status: StatusInvalid, Reason: reason})
}

// Booted returns the outcome of the last Boot (see Booted.Failed), nil if
// the device never booted.
func (d *Device) Booted() (*Booted, error) {
	var b Booted
	err := readRecord(d.fsys, d.statePath(bootedFile), MaxSmallRecordSize, &b)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}

func (d *Device) writeBooted(b *Booted) error {
	b.Format = RecordFormat
	b.Time = d.now()
	return writeRecord(d.fsys, d.statePath(bootedFile), b)
}

// LastResult returns the result of the last operation, nil if none.
func (d *Device) LastResult() (*Result, error) {
	var r Result
	err := readRecord(d.fsys, d.statePath(lastFile), MaxSmallRecordSize, &r)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// recordResult stores the last operation's result (best effort: a failure
// to record a result must not turn a finished operation into a failed one).
func (d *Device) recordResult(op string, slot boot.Slot, version string, opErr error, okMsg string) {
	r := &Result{Format: RecordFormat, Operation: op, OK: opErr == nil, Slot: slot, Version: version, Message: okMsg, Time: d.now()}
	if opErr != nil {
		r.Message = opErr.Error()
	}
	_ = writeRecord(d.fsys, d.statePath(lastFile), r)
}
