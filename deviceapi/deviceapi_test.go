package deviceapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// worst is the valid character encoding/json escapes most: '<' becomes the
// six bytes \u003c.
const worst = "<"

// TestMaximalRequestsFitTheirLimits: a valid request with every field at its
// limit, in the worst-escaping character, encodes within the request size
// limit, so the server never answers a valid report with 413.
func TestMaximalRequestsFitTheirLimits(t *testing.T) {
	str := strings.Repeat(worst, MaxStringLength)
	msg := strings.Repeat(worst, MaxMessageLength)
	csr := "-----BEGIN CERTIFICATE REQUEST-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", (MaxCSRSize-80)/65) + "-----END CERTIFICATE REQUEST-----\n"
	for _, tt := range []struct {
		name  string
		req   interface{ Validate() error }
		limit int
	}{
		{"enroll", EnrollRequest{Token: strings.Repeat("A", 43), CSR: csr, Model: str, HWRev: 1<<32 - 1, Product: str, Channel: str, CurrentVersion: str}, MaxEnrollRequestSize},
		{"checkin", CheckinRequest{CurrentVersion: str, SecurityCounter: MaxSecurityCounter, State: StateRolledBack, Slot: SlotB, LastError: msg}, MaxCheckinRequestSize},
		{"status", StatusReport{ID: strings.Repeat("f", ReportIDLength), Kind: StateRolledBack, Version: str, Message: msg}, MaxStatusRequestSize},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.req.Validate(); err != nil {
				t.Fatalf("maximal request is invalid: %v", err)
			}
			data, err := json.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > tt.limit {
				t.Fatalf("maximal valid request encodes to %d bytes, over its limit %d", len(data), tt.limit)
			}
		})
	}
}

func TestValidateRefusesOutOfRangeFields(t *testing.T) {
	long := strings.Repeat("x", MaxStringLength+1)
	longMsg := strings.Repeat("x", MaxMessageLength+1)
	okEnroll := EnrollRequest{CSR: "csr", Model: "x1", Product: "acme/router"}
	okCheckin := CheckinRequest{State: StateIdle, Slot: SlotA}
	okStatus := StatusReport{Kind: StateFailed, Message: "line\n\tindented"}
	for _, tt := range []struct {
		name string
		req  interface{ Validate() error }
		ok   bool
	}{
		{"enroll ok", okEnroll, true},
		{"enroll without csr", EnrollRequest{Model: "x1", Product: "p"}, false},
		{"enroll csr too large", EnrollRequest{CSR: strings.Repeat("c", MaxCSRSize+1), Model: "x1", Product: "p"}, false},
		{"enroll without model", EnrollRequest{CSR: "c", Product: "p"}, false},
		{"enroll without product", EnrollRequest{CSR: "c", Model: "x1"}, false},
		{"enroll long channel", EnrollRequest{CSR: "c", Model: "x1", Product: "p", Channel: long}, false},
		{"enroll newline in model", EnrollRequest{CSR: "c", Model: "x\n1", Product: "p"}, false},
		{"enroll NUL in product", EnrollRequest{CSR: "c", Model: "x1", Product: "p\x00"}, false},
		{"checkin ok", okCheckin, true},
		{"checkin without slot", CheckinRequest{State: StateRebooted}, true},
		{"checkin empty state", CheckinRequest{}, false},
		{"checkin unknown state", CheckinRequest{State: "trial"}, false},
		{"checkin uppercase state", CheckinRequest{State: "IDLE"}, false},
		{"checkin uppercase slot", CheckinRequest{State: StateIdle, Slot: "A"}, false},
		{"checkin recovery slot", CheckinRequest{State: StateIdle, Slot: "r"}, false},
		{"checkin counter too large", CheckinRequest{State: StateIdle, SecurityCounter: MaxSecurityCounter + 1}, false},
		{"checkin long version", CheckinRequest{State: StateIdle, CurrentVersion: long}, false},
		{"checkin long last error", CheckinRequest{State: StateIdle, LastError: longMsg}, false},
		{"checkin escape in last error", CheckinRequest{State: StateIdle, LastError: "\x1b[2J"}, false},
		{"checkin invalid utf-8 in last error", CheckinRequest{State: StateIdle, LastError: "\xff"}, false},
		{"status ok", okStatus, true},
		{"status idle", StatusReport{Kind: StateIdle}, false},
		{"status unknown kind", StatusReport{Kind: "exploded"}, false},
		{"status newline in version", StatusReport{Kind: StateFailed, Version: "1.0\n"}, false},
		{"status C1 control in message", StatusReport{Kind: StateFailed, Message: "a\u0085b"}, false},
		{"status long message", StatusReport{Kind: StateFailed, Message: longMsg}, false},
		{"status with id", StatusReport{ID: "0123456789abcdef0123456789abcdef", Kind: StateCommitted}, true},
		{"status id too short", StatusReport{ID: "0123456789abcdef0123456789abcde", Kind: StateCommitted}, false},
		{"status id too long", StatusReport{ID: "0123456789abcdef0123456789abcdef0", Kind: StateCommitted}, false},
		{"status uppercase id", StatusReport{ID: "0123456789ABCDEF0123456789abcdef", Kind: StateCommitted}, false},
		{"status id not hex", StatusReport{ID: "0123456789abcdef0123456789abcdeg", Kind: StateCommitted}, false},
		{"status id with space", StatusReport{ID: " 123456789abcdef0123456789abcdef", Kind: StateCommitted}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if tt.name == "too large" && !strings.Contains(err.Error(), "MaxResponseSize") {
				t.Errorf("error %q does not name the limit MaxResponseSize", err)
			}
		})
	}
}

// TestEveryStateIsAValidCheckinAndEveryKindAValidReport: the agent reports
// its state with these constants and its steps as kinds; the server checks
// them with the same Validate.
func TestEveryStateIsAValidCheckinAndEveryKindAValidReport(t *testing.T) {
	if len(States()) != 8 {
		t.Fatalf("States() = %v", States())
	}
	for _, s := range States() {
		if err := (CheckinRequest{State: s}).Validate(); err != nil {
			t.Errorf("check-in with state %q refused: %v", s, err)
		}
		err := (StatusReport{Kind: s}).Validate()
		if wantOK := s != StateIdle; (err == nil) != wantOK {
			t.Errorf("status report of kind %q: %v, want ok=%v", s, err, wantOK)
		}
	}
}

const validResponse = `{"poll_interval_seconds":60,"repository":{"metadata_url":"/m","targets_url":"/t"},"server_time":"2024-01-01T00:00:00Z"}`

func TestDecodeResponseIsStrict(t *testing.T) {
	deep := `{"assignment":` + strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat(`}`, MaxDepth+1)
	for _, tt := range []struct {
		name, in string
		ok       bool
	}{
		{"valid", validResponse, true},
		{"whitespace around", " \n" + validResponse + "\n", true},
		{"assignment with a new field", `{"poll_interval_seconds":60,"assignment":{"rollout_id":"r","release":"p@1","target_path":"t","stage":{"n":[1,2]}}}`, true},
		{"unknown field", `{"poll_interval_seconds":60,"device_id":"x"}`, false},
		{"duplicate key", `{"poll_interval_seconds":60,"poll_interval_seconds":1}`, false},
		{"duplicate nested key", `{"repository":{"metadata_url":"/m","metadata_url":"https://evil/"}}`, false},
		{"case alias of a key", `{"repository":{"metadata_url":"/m","Metadata_URL":"https://evil/"}}`, false},
		{"uppercase key", `{"Poll_Interval_Seconds":60}`, false},
		{"duplicate key inside the lenient assignment", `{"assignment":{"release":"a@1","release":"b@2"}}`, false},
		{"too deep", deep, false},
		{"second object", validResponse + `{}`, false},
		{"trailing garbage", validResponse + ` x`, false},
		{"wrong type", `{"poll_interval_seconds":"60"}`, false},
		{"array", `[]`, false},
		{"null", `null`, false},
		{"empty", ``, false},
		{"truncated", validResponse[:len(validResponse)-1], false},
		{"too large", `{"poll_interval_seconds":60` + strings.Repeat(" ", MaxResponseSize) + `}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var resp CheckinResponse
			err := DecodeResponse([]byte(tt.in), &resp)
			if (err == nil) != tt.ok {
				t.Fatalf("DecodeResponse = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if tt.name == "too large" && !strings.Contains(err.Error(), "MaxResponseSize") {
				t.Errorf("error %q does not name the limit MaxResponseSize", err)
			}
		})
	}
	var resp CheckinResponse
	if err := DecodeResponse([]byte(validResponse), &resp); err != nil {
		t.Fatal(err)
	}
	want := CheckinResponse{PollIntervalSeconds: 60, Repository: Repository{MetadataURL: "/m", TargetsURL: "/t"},
		ServerTime: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	if diff := cmp.Diff(want, resp); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

// FuzzDecodeResponse: no input panics, and every prefix of a valid response
// is refused.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(validResponse))
	f.Add([]byte(`{"assignment":{"rollout_id":"r","x":[{"y":1}]}}`))
	f.Add([]byte(`{"repository":{"metadata_url":"/m","metadata_url":"/n"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp CheckinResponse
		if DecodeResponse(data, &resp) != nil {
			return
		}
		trimmed := strings.TrimRight(string(data), " \t\r\n")
		for i := 1; i < len(trimmed); i++ {
			var p CheckinResponse
			if DecodeResponse([]byte(trimmed[:i]), &p) == nil {
				t.Fatalf("prefix %q of valid response %q accepted", trimmed[:i], data)
			}
		}
	})
}

func TestPollIntervalBounds(t *testing.T) {
	for _, tt := range []struct {
		secs int64
		want time.Duration
		ok   bool
	}{
		{0, 0, true},
		{1, time.Second, true},
		{int64(MaxPollInterval / time.Second), MaxPollInterval, true},
		{-1, 0, false},
		{int64(MaxPollInterval/time.Second) + 1, 0, false},
		{1 << 40, 0, false},
	} {
		got, err := PollInterval(tt.secs)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("PollInterval(%d) = %v, %v; want %v ok=%v", tt.secs, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("PollInterval(%d) error does not wrap ErrInvalid: %v", tt.secs, err)
		}
	}
}

// TestCleanMessageMakesAnyTextAValidReport: a message cut inside a
// character, a terminal escape or a carriage return from a health check's
// output still makes a report the server accepts.
func TestCleanMessageMakesAnyTextAValidReport(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"plain", "health check passed", "health check passed"},
		{"newline and tab kept", "a\n\tb", "a\n\tb"},
		{"carriage return", "a\r\nb", "a\uFFFD\nb"},
		{"escape", "\x1b[31mred", "\uFFFD[31mred"},
		{"invalid utf-8", "a\xffb", "a\uFFFDb"},
		{"C1 control", "a\u0085b", "a\uFFFDb"},
		{"cut inside a character", strings.Repeat("x", MaxMessageLength-1) + "é", strings.Repeat("x", MaxMessageLength-1)},
		{"long", strings.Repeat("y", 2*MaxMessageLength), strings.Repeat("y", MaxMessageLength)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := CleanMessage(tt.in)
			if got != tt.want {
				t.Errorf("CleanMessage(%.40q...) = %.40q..., want %.40q...", tt.in, got, tt.want)
			}
			if err := (StatusReport{Kind: StateFailed, Message: got}).Validate(); err != nil {
				t.Errorf("cleaned message is refused: %v", err)
			}
		})
	}
}

func FuzzCleanMessage(f *testing.F) {
	f.Add("ok")
	f.Add("a\r\n\x00\xff\u0085é")
	f.Fuzz(func(t *testing.T, s string) {
		got := CleanMessage(s)
		if len(got) > MaxMessageLength || !utf8.ValidString(got) {
			t.Fatalf("CleanMessage(%q) = %q", s, got)
		}
		if err := (StatusReport{Kind: StateFailed, Message: got}).Validate(); err != nil {
			t.Fatalf("CleanMessage(%q) = %q is refused: %v", s, got, err)
		}
		if len(s) <= MaxMessageLength && ValidText(s, true) && got != s {
			t.Fatalf("CleanMessage changed valid text %q to %q", s, got)
		}
	})
}
