package deviceapi

import (
	"encoding/json"
	"fmt"
	"time"
)

// EnrollRequest is the body of POST PathEnroll. The CSR carries the
// device's public key; the private key never leaves the device.
type EnrollRequest struct {
	// Token is an enrollment token; omit it to enroll with a factory
	// certificate presented in the TLS handshake.
	Token string `json:"token,omitempty"`
	// CSR is a PEM PKCS#10 request for the device's own key (ECDSA P-256 or
	// Ed25519), at most MaxCSRSize bytes.
	CSR            string `json:"csr"`
	Model          string `json:"model"`
	HWRev          uint32 `json:"hw_rev"`
	Product        string `json:"product"`
	Channel        string `json:"channel,omitempty"`
	CurrentVersion string `json:"current_version,omitempty"`
}

// Validate checks the fields both sides can check: model and product
// present, the text fields within MaxStringLength without control
// characters, the CSR within MaxCSRSize. The server checks the token and
// parses the CSR (signature, key type). Errors wrap ErrInvalid.
func (r EnrollRequest) Validate() error {
	if r.CSR == "" {
		return invalid("csr is required")
	}
	if len(r.CSR) > MaxCSRSize {
		return invalid("csr: %d bytes exceeds limit %d (MaxCSRSize)", len(r.CSR), MaxCSRSize)
	}
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"model", r.Model, true}, {"product", r.Product, true},
		{"channel", r.Channel, false}, {"current_version", r.CurrentVersion, false},
	} {
		if err := checkText(f.name, f.v, MaxStringLength, f.required, false); err != nil {
			return err
		}
	}
	return nil
}

// EnrollResponse is the 201 body of POST PathEnroll.
type EnrollResponse struct {
	DeviceID            string `json:"device_id"`
	Certificate         string `json:"certificate"` // PEM client certificate
	CAChain             string `json:"ca_chain"`    // PEM device CA (issuer of Certificate)
	PollIntervalSeconds int64  `json:"poll_interval_seconds"`
}

// CheckinRequest is the body of POST PathCheckin (mTLS).
type CheckinRequest struct {
	CurrentVersion  string `json:"current_version"`
	SecurityCounter uint64 `json:"security_counter"`
	// State is one of the State constants: StateIdle, StateInstalled
	// (waiting for the reboot) or StateRebooted (on trial) from the agent.
	State string `json:"state"`
	// Slot is the device's committed A/B slot (SlotA or SlotB); "" when
	// unknown.
	Slot string `json:"slot,omitempty"`
	// LastError replaces the stored last error; "" clears it.
	LastError string `json:"last_error,omitempty"`
}

// Validate checks a check-in: a known state, a known slot or none, the
// counter within MaxSecurityCounter, the version within MaxStringLength
// and the last error within MaxMessageLength, without control characters
// (newline and tab allowed in the last error). Errors wrap ErrInvalid.
func (r CheckinRequest) Validate() error {
	if !ValidState(r.State) {
		return invalid("state %q is not one of the device states", truncate(r.State))
	}
	if r.Slot != "" && !ValidSlot(r.Slot) {
		return invalid("slot %q must be %q or %q", truncate(r.Slot), SlotA, SlotB)
	}
	if r.SecurityCounter > MaxSecurityCounter {
		return invalid("security_counter exceeds %d", uint64(MaxSecurityCounter))
	}
	if err := checkText("current_version", r.CurrentVersion, MaxStringLength, false, false); err != nil {
		return err
	}
	return checkText("last_error", r.LastError, MaxMessageLength, false, true)
}

// Repository locates the image repository: absolute HTTPS URLs, or paths
// relative to the server.
type Repository struct {
	MetadataURL string `json:"metadata_url"`
	TargetsURL  string `json:"targets_url"`
}

// CheckinResponse is the 200 body of POST PathCheckin.
type CheckinResponse struct {
	PollIntervalSeconds int64      `json:"poll_interval_seconds"`
	Repository          Repository `json:"repository"`
	ServerTime          time.Time  `json:"server_time"`
	// Assignment names the release a staged rollout assigned to this
	// device. It is informational (logged): in director mode the signed
	// director metadata decides, and without it the agent installs the
	// newest release the vendor-signed repository offers. Omitted when
	// none.
	Assignment *Assignment `json:"assignment,omitempty"`
}

// Assignment is the informational assignment of a check-in response.
type Assignment struct {
	RolloutID  string `json:"rollout_id"`
	Release    string `json:"release"` // "product@version"
	TargetPath string `json:"target_path"`
}

// UnmarshalJSON decodes an assignment leniently (unknown fields are
// ignored): it is informational, never acted on, so a newer server may add
// fields without breaking older agents. Its size, nesting and keys are
// bounded by the check-in response (DecodeResponse).
func (as *Assignment) UnmarshalJSON(data []byte) error {
	type plain Assignment
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*as = Assignment(p)
	return nil
}

// PollInterval checks a server's poll_interval_seconds: 0 (none sent) or
// within MinPollInterval..MaxPollInterval. Errors wrap ErrInvalid.
func PollInterval(secs int64) (time.Duration, error) {
	if secs == 0 {
		return 0, nil
	}
	lo, hi := int64(MinPollInterval/time.Second), int64(MaxPollInterval/time.Second)
	if secs < lo || secs > hi {
		return 0, invalid("poll_interval_seconds %d out of range [%d, %d]", secs, lo, hi)
	}
	return time.Duration(secs) * time.Second, nil
}

// StatusReport is the body of POST PathStatus (mTLS): one step of an
// update.
type StatusReport struct {
	// ID identifies the report (ValidReportID): the agent sends a report
	// until the server acknowledges it, and the server records a report
	// ID of a device once, so a resent report is acknowledged without
	// being recorded twice. "" (an agent without a report queue): no ID,
	// every copy is recorded.
	ID string `json:"id,omitempty"`
	// Kind is the step: a State other than StateIdle. The server moves the
	// device to that state.
	Kind    string `json:"kind"`
	Version string `json:"version,omitempty"`
	Message string `json:"message,omitempty"`
}

// Validate checks a status report: an ID that is empty or ValidReportID, a
// known kind, the version within MaxStringLength and the message within
// MaxMessageLength, without control characters (newline and tab allowed in
// the message). Errors wrap ErrInvalid.
func (r StatusReport) Validate() error {
	if r.ID != "" && !ValidReportID(r.ID) {
		return invalid("report id %q is not %d lowercase hex digits (ReportIDLength)", truncate(r.ID), ReportIDLength)
	}
	if !ValidKind(r.Kind) {
		return invalid("unknown status kind %q", truncate(r.Kind))
	}
	if err := checkText("version", r.Version, MaxStringLength, false, false); err != nil {
		return err
	}
	return checkText("message", r.Message, MaxMessageLength, false, true)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
