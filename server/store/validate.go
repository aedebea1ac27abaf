package store

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/airlockfw/airlock/deviceapi"
)

// invalid returns an error wrapping ErrInvalid that names the field and check.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// checkID accepts 1..MaxIDLen bytes of [A-Za-z0-9._-].
func checkID(field, s string) error {
	if s == "" {
		return invalid(field, "empty")
	}
	if len(s) > MaxIDLen {
		return invalid(field, "%d bytes exceeds limit %d", len(s), MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid(field, "character %q at offset %d is not allowed", c, i)
		}
	}
	return nil
}

// checkText accepts valid UTF-8 without control characters (tab and newline
// allowed when multiline), at most max bytes, non-empty when required.
func checkText(field, s string, max int, required, multiline bool) error {
	if s == "" && required {
		return invalid(field, "empty")
	}
	if len(s) > max {
		return invalid(field, "%d bytes exceeds limit %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			if multiline && (r == '\n' || r == '\t') {
				continue
			}
			return invalid(field, "control character %q at offset %d", r, i)
		}
	}
	return nil
}

func checkString(field, s string, required bool) error {
	return checkText(field, s, MaxStringLen, required, false)
}

func checkMessage(field, s string) error {
	return checkText(field, s, MaxMessageLen, false, true)
}

// checkWord accepts 1..MaxStringLen bytes of [a-z0-9_-].
func checkWord(field, s string) error {
	if s == "" {
		return invalid(field, "empty")
	}
	if len(s) > MaxStringLen {
		return invalid(field, "%d bytes exceeds limit %d", len(s), MaxStringLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return invalid(field, "character %q at offset %d is not allowed", c, i)
		}
	}
	return nil
}

// checkHex accepts 1..MaxStringLen lowercase hex digits, exactly n if n > 0.
func checkHex(field, s string, n int) error {
	if s == "" {
		return invalid(field, "empty")
	}
	if len(s) > MaxStringLen {
		return invalid(field, "%d bytes exceeds limit %d", len(s), MaxStringLen)
	}
	if n > 0 && len(s) != n {
		return invalid(field, "%d hex digits, want %d", len(s), n)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return invalid(field, "character %q at offset %d is not lowercase hex", c, i)
		}
	}
	return nil
}

func checkHash(field string, h []byte) error {
	if len(h) != HashSize {
		return invalid(field, "%d bytes, want %d (SHA-256)", len(h), HashSize)
	}
	return nil
}

func checkTime(field string, t time.Time) error {
	if t.IsZero() {
		return invalid(field, "zero time")
	}
	// Keep Unix microseconds within int64 and years within what both databases
	// and time.Time round-trip.
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return invalid(field, "year %d outside 1970..9999", y)
	}
	return nil
}

func checkOptionalTime(field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	return checkTime(field, t)
}

func checkState(field, s string) error {
	if !ValidState(s) {
		return invalid(field, "unknown state %q", truncate(s))
	}
	return nil
}

// checkSlot accepts "" (unknown) and the device API's slot names.
func checkSlot(field, s string) error {
	if s != "" && !deviceapi.ValidSlot(s) {
		return invalid(field, "%q is not %q or %q", truncate(s), deviceapi.SlotA, deviceapi.SlotB)
	}
	return nil
}

func checkCounter(field string, c uint64) error {
	if c > MaxSecurityCounter {
		return invalid(field, "%d exceeds limit %d", c, uint64(MaxSecurityCounter))
	}
	return nil
}

func checkLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultListLimit, nil
	case limit < 0:
		return 0, invalid("limit", "negative")
	case limit > MaxListLimit:
		return 0, invalid("limit", "%d exceeds limit %d", limit, MaxListLimit)
	}
	return limit, nil
}

// truncate shortens untrusted values before they are quoted in errors.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// validateTags checks device tags: at most MaxTags, unique, non-empty.
func validateTags(tags []string) error {
	if len(tags) > MaxTags {
		return invalid("device tags", "%d tags exceeds limit %d", len(tags), MaxTags)
	}
	seen := make(map[string]bool, len(tags))
	for i, tag := range tags {
		if err := checkString(fmt.Sprintf("device tag %d", i), tag, true); err != nil {
			return err
		}
		if seen[tag] {
			return invalid(fmt.Sprintf("device tag %d", i), "duplicate tag %q", truncate(tag))
		}
		seen[tag] = true
	}
	return nil
}

func validateDevice(d *Device) error {
	if err := checkID("device id", d.ID); err != nil {
		return err
	}
	if err := checkString("device model", d.Model, true); err != nil {
		return err
	}
	if err := checkString("device product", d.Product, true); err != nil {
		return err
	}
	if err := checkString("device channel", d.Channel, false); err != nil {
		return err
	}
	if err := validateTags(d.Tags); err != nil {
		return err
	}
	if err := checkString("device current version", d.CurrentVersion, false); err != nil {
		return err
	}
	if err := checkCounter("device security counter", d.SecurityCounter); err != nil {
		return err
	}
	if d.State == "" {
		d.State = StateIdle
	}
	if err := checkState("device state", d.State); err != nil {
		return err
	}
	if err := checkSlot("device slot", d.Slot); err != nil {
		return err
	}
	if err := checkMessage("device last error", d.LastError); err != nil {
		return err
	}
	if err := checkHex("device cert serial", d.CertSerial, 0); err != nil {
		return err
	}
	if err := checkHex("device cert fingerprint", d.CertFingerprint, 2*HashSize); err != nil {
		return err
	}
	if err := checkTime("device enrolled at", d.EnrolledAt); err != nil {
		return err
	}
	return checkOptionalTime("device last seen", d.LastSeen)
}

func validateReport(r DeviceReport) error {
	if err := checkString("report current version", r.CurrentVersion, false); err != nil {
		return err
	}
	if err := checkCounter("report security counter", r.SecurityCounter); err != nil {
		return err
	}
	if err := checkState("report state", r.State); err != nil {
		return err
	}
	if err := checkSlot("report slot", r.Slot); err != nil {
		return err
	}
	return checkMessage("report last error", r.LastError)
}

func validateEnrollmentToken(t EnrollmentToken) error {
	if err := checkID("enrollment token id", t.ID); err != nil {
		return err
	}
	if err := checkHash("enrollment token hash", t.Hash); err != nil {
		return err
	}
	if err := checkString("enrollment token product", t.Product, false); err != nil {
		return err
	}
	if err := checkString("enrollment token model", t.Model, false); err != nil {
		return err
	}
	if t.UsesLeft < 1 || t.UsesLeft > MaxTokenUses {
		return invalid("enrollment token uses left", "%d outside 1..%d", t.UsesLeft, MaxTokenUses)
	}
	if err := checkTime("enrollment token expires at", t.ExpiresAt); err != nil {
		return err
	}
	return checkTime("enrollment token created at", t.CreatedAt)
}

func validateEvent(e Event) error {
	if e.ID != 0 {
		return invalid("event id", "assigned by the store, must be 0")
	}
	if err := checkID("event device id", e.DeviceID); err != nil {
		return err
	}
	if err := checkTime("event time", e.Time); err != nil {
		return err
	}
	if err := checkWord("event kind", e.Kind); err != nil {
		return err
	}
	if err := checkString("event version", e.Version, false); err != nil {
		return err
	}
	if e.ReportID != "" && !deviceapi.ValidReportID(e.ReportID) {
		return invalid("event report id", "not %d lowercase hex digits", deviceapi.ReportIDLength)
	}
	return checkMessage("event message", e.Message)
}

func validateAdminToken(t AdminToken) error {
	if err := checkID("admin token id", t.ID); err != nil {
		return err
	}
	if err := checkID("admin token user id", t.UserID); err != nil {
		return err
	}
	if err := checkString("admin token name", t.Name, true); err != nil {
		return err
	}
	if err := checkWord("admin token role", t.Role); err != nil {
		return err
	}
	if err := checkHash("admin token hash", t.Hash); err != nil {
		return err
	}
	if err := checkTime("admin token created at", t.CreatedAt); err != nil {
		return err
	}
	return checkOptionalTime("admin token last used", t.LastUsed)
}
