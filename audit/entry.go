package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/airlockfw/airlock/internal/strictjson"
)

// Limits on one entry. The log is read back as untrusted input, so every
// field is bounded.
const (
	// MaxEntrySize bounds one encoded entry (one line of audit.log, without
	// the newline).
	MaxEntrySize = 16 << 10
	// MaxFieldLen bounds the actor, release and device fields, in bytes.
	MaxFieldLen = 256
	// MaxDetails bounds the number of detail keys of one entry.
	MaxDetails = 32
	// MaxDetailKeyLen bounds a detail key, in bytes.
	MaxDetailKeyLen = 64
	// MaxDetailValueLen bounds a detail value, in bytes.
	MaxDetailValueLen = 1024
)

// HashSize is the size of leaf and root hashes (SHA-256).
const HashSize = 32

// Action names what happened. The set is closed: [Log.Append] and
// [ParseEntry] reject any other value.
type Action string

// The actions. Keep docs/audit.md in sync.
const (
	KeyGenerated Action = "key.generated"
	KeyRotated   Action = "key.rotated"
	KeyRevoked   Action = "key.revoked"
	// MetadataRenewed: a role re-signed with a new expiry (repo renew).
	MetadataRenewed Action = "metadata.renewed"

	ReleaseAdded     Action = "release.added"
	ReleaseSigned    Action = "release.signed"
	ReleaseApproved  Action = "release.approved"
	ReleaseRejected  Action = "release.rejected" // an approver declined
	ReleasePublished Action = "release.published"
	ReleaseRevoked   Action = "release.revoked"  // withdrawn from the repository
	ReleaseDeployed  Action = "release.deployed" // cleared for distribution (after its approvals)
	// ReleaseDeltaAdded: a delta from an older release signed into an
	// existing release (delta create).
	ReleaseDeltaAdded Action = "release.delta_added"

	RolloutStarted   Action = "rollout.started"
	RolloutPaused    Action = "rollout.paused"
	RolloutResumed   Action = "rollout.resumed"
	RolloutAdvanced  Action = "rollout.advanced"
	RolloutCancelled Action = "rollout.cancelled"
	RolloutCompleted Action = "rollout.completed"
	// RolloutCreated: a rollout was defined (it starts in its first stage
	// or waits for its approvals).
	RolloutCreated Action = "rollout.created"
	// RolloutTransition: the rollout state machine moved (start, pause,
	// resume, advance, cancel, complete, health gates); from, to and
	// reason in details.
	RolloutTransition Action = "rollout.transition"
	// RolloutAssigned: a device was assigned to a rollout's release.
	RolloutAssigned Action = "rollout.assigned"
	// RolloutReconciled: a device's rollout outcome was set or corrected
	// from what the device stated at check-in.
	RolloutReconciled Action = "rollout.reconciled"

	DeviceEnrolled   Action = "device.enrolled"
	DeviceUpdated    Action = "device.updated" // installed and committed a release
	DeviceRolledBack Action = "device.rolled_back"
	DeviceFailed     Action = "device.failed" // an install or boot attempt failed
	DeviceRemoved    Action = "device.removed"
	DeviceTags       Action = "device.tags" // an operator replaced a device's tags

	AuthLogin       Action = "auth.login"
	AuthLoginFailed Action = "auth.login_failed"
	AuthLogout      Action = "auth.logout"

	UserCreated      Action = "user.created"
	UserDisabled     Action = "user.disabled"
	UserTokenCreated Action = "user.token_created"
)

// Actions lists every valid Action.
var Actions = []Action{
	KeyGenerated, KeyRotated, KeyRevoked, MetadataRenewed,
	ReleaseAdded, ReleaseSigned, ReleaseApproved, ReleaseRejected, ReleasePublished, ReleaseRevoked, ReleaseDeployed, ReleaseDeltaAdded,
	RolloutStarted, RolloutPaused, RolloutResumed, RolloutAdvanced, RolloutCancelled, RolloutCompleted,
	RolloutCreated, RolloutTransition, RolloutAssigned, RolloutReconciled,
	DeviceEnrolled, DeviceUpdated, DeviceRolledBack, DeviceFailed, DeviceRemoved, DeviceTags,
	AuthLogin, AuthLoginFailed, AuthLogout,
	UserCreated, UserDisabled, UserTokenCreated,
}

// Valid reports whether a is one of [Actions].
func (a Action) Valid() bool {
	for _, v := range Actions {
		if a == v {
			return true
		}
	}
	return false
}

// SystemActor is the actor of events no person or device caused.
const SystemActor = "system"

// Entry is one audit event.
type Entry struct {
	// Seq is the entry's position in the log, from 0, contiguous. Append
	// assigns it; a value set by the caller is ignored.
	Seq uint64
	// Time is when the event happened, stored in UTC. Append sets it to the
	// current time when zero.
	Time time.Time
	// Actor is who did it: a user name, a key ID, a device ID or
	// [SystemActor]. Required.
	Actor string
	// Action is what happened. Required.
	Action Action
	// Release is the release concerned, "product@version", or "".
	Release string
	// Device is the device concerned, or "".
	Device string
	// Details are small free-form facts (key IDs, cohort, reason, remote
	// address). Keys are 1 to MaxDetailKeyLen of [a-z0-9_.-].
	Details map[string]string
	// Prev is the leaf hash of entry Seq-1 (all zeros for entry 0), the hash
	// chain. Append assigns it.
	Prev [HashSize]byte
}

// ErrInvalidEntry is returned (wrapped) by Append for an entry that breaks
// the rules documented on [Entry].
var ErrInvalidEntry = errors.New("invalid audit entry")

// Validate checks the fields a caller sets (everything but Seq and Prev),
// as Append does; errors wrap [ErrInvalidEntry]. A zero Time passes (Append
// sets it).
func (e *Entry) Validate() error {
	if e.Time.IsZero() {
		c := *e
		c.Time = time.Unix(0, 0)
		return c.validate()
	}
	return e.validate()
}

// validate checks the caller-controlled fields.
func (e *Entry) validate() error {
	if e.Actor == "" {
		return fmt.Errorf("%w: actor is empty", ErrInvalidEntry)
	}
	if err := checkText("actor", e.Actor, MaxFieldLen); err != nil {
		return err
	}
	if !e.Action.Valid() {
		return fmt.Errorf("%w: unknown action %q", ErrInvalidEntry, e.Action)
	}
	if err := checkText("release", e.Release, MaxFieldLen); err != nil {
		return err
	}
	if e.Release != "" {
		p, v, ok := strings.Cut(e.Release, "@")
		if !ok || p == "" || v == "" || strings.Contains(v, "@") || strings.ContainsFunc(e.Release, unicode.IsSpace) {
			return fmt.Errorf("%w: release %q is not product@version", ErrInvalidEntry, e.Release)
		}
	}
	if err := checkText("device", e.Device, MaxFieldLen); err != nil {
		return err
	}
	if len(e.Details) > MaxDetails {
		return fmt.Errorf("%w: %d details, more than %d", ErrInvalidEntry, len(e.Details), MaxDetails)
	}
	for k, v := range e.Details {
		if !validDetailKey(k) {
			return fmt.Errorf("%w: detail key %q is not 1 to %d of [a-z0-9_.-]", ErrInvalidEntry, k, MaxDetailKeyLen)
		}
		if err := checkText("detail "+k, v, MaxDetailValueLen); err != nil {
			return err
		}
	}
	if y := e.Time.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%w: time %v out of range", ErrInvalidEntry, e.Time)
	}
	return nil
}

// checkText rejects over-long values, invalid UTF-8 and control characters
// (which could forge lines in a terminal showing the log).
func checkText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidEntry, field, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEntry, field)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%w: %s contains a control character", ErrInvalidEntry, field)
	}
	return nil
}

func validDetailKey(k string) bool {
	if k == "" || len(k) > MaxDetailKeyLen {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

const timeFormat = time.RFC3339Nano

// Encode returns the canonical encoding of e: one JSON object with the fields
// seq, time, actor, action, release, device, details, prev in that order, no
// white space, details keys sorted, time in UTC RFC 3339 with the shortest
// fraction. It does not validate e.
func (e *Entry) Encode() []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":`...)
	b = appendString(b, e.Time.UTC().Format(timeFormat))
	b = append(b, `,"actor":`...)
	b = appendString(b, e.Actor)
	b = append(b, `,"action":`...)
	b = appendString(b, string(e.Action))
	b = append(b, `,"release":`...)
	b = appendString(b, e.Release)
	b = append(b, `,"device":`...)
	b = appendString(b, e.Device)
	b = append(b, `,"details":{`...)
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, e.Details[k])
	}
	b = append(b, `},"prev":"`...)
	b = hex.AppendEncode(b, e.Prev[:])
	b = append(b, `"}`...)
	return b
}

// appendString appends s as a JSON string, as encoding/json writes it (HTML
// characters escaped, invalid UTF-8 replaced), which is the one form the
// parser accepts.
func appendString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil {
		panic("internal error: marshaling a string: " + err.Error())
	}
	return append(b, q...)
}

// wireEntry is the JSON shape used only to parse; canonicality is checked by
// re-encoding.
type wireEntry struct {
	Seq     uint64            `json:"seq"`
	Time    string            `json:"time"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Release string            `json:"release"`
	Device  string            `json:"device"`
	Details map[string]string `json:"details"`
	Prev    string            `json:"prev"`
}

// ErrMalformed reports an entry or checkpoint that is not in the one
// canonical form this package writes. In the middle of a log it means
// corruption or tampering.
var ErrMalformed error = tamperError("malformed")

// ParseEntry parses one line of audit.log (without the newline). It accepts
// exactly the bytes [Entry.Encode] produces for a valid entry: unknown,
// missing or duplicate fields, other field orders, white space, escapes the
// encoder would not write and non-UTC times are all rejected.
func ParseEntry(line []byte) (Entry, error) {
	if len(line) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%w: entry is larger than %d bytes", ErrMalformed, MaxEntrySize)
	}
	if len(line) == 0 || line[0] != '{' {
		return Entry{}, fmt.Errorf("%w: entry is not a JSON object", ErrMalformed)
	}
	var w wireEntry
	if err := (strictjson.Limits{Size: MaxEntrySize}).Unmarshal(line, &w); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	t, err := time.Parse(timeFormat, w.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: bad time %q", ErrMalformed, w.Time)
	}
	e := Entry{Seq: w.Seq, Time: t.UTC(), Actor: w.Actor, Action: Action(w.Action), Release: w.Release, Device: w.Device, Details: w.Details}
	if len(w.Prev) != 2*HashSize {
		return Entry{}, fmt.Errorf("%w: prev is not %d hex digits", ErrMalformed, 2*HashSize)
	}
	if _, err := hex.Decode(e.Prev[:], []byte(w.Prev)); err != nil {
		return Entry{}, fmt.Errorf("%w: prev is not hex", ErrMalformed)
	}
	if err := e.validate(); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(e.Encode(), line) {
		return Entry{}, fmt.Errorf("%w: entry is not in canonical form", ErrMalformed)
	}
	return e, nil
}
