package auth

import (
	"strings"
	"testing"
	"time"
)

// RFC 6238 Appendix B, SHA-1 rows (8 digits, seed "12345678901234567890").
func TestTOTPMatchesRFC6238Vectors(t *testing.T) {
	seed := []byte("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		want string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	} {
		step := TOTPStep(time.Unix(tc.unix, 0))
		if got := hotp(seed, uint64(step), 8); got != tc.want {
			t.Errorf("T=%d: got %s, want %s", tc.unix, got, tc.want)
		}
		// The 6-digit code is the same value modulo 10^6.
		if got := TOTPCode(seed, time.Unix(tc.unix, 0)); got != tc.want[2:] {
			t.Errorf("T=%d: 6-digit code %s, want %s", tc.unix, got, tc.want[2:])
		}
	}
}

func TestVerifyTOTPWindow(t *testing.T) {
	secret := []byte("0123456789abcdefghij")
	now := time.Unix(1_700_000_000, 0)
	cur := TOTPStep(now)
	for _, tc := range []struct {
		name string
		at   time.Duration
		ok   bool
		step int64
	}{
		{"current step", 0, true, cur},
		{"previous step (skew)", -TOTPPeriod, true, cur - 1},
		{"next step (skew)", TOTPPeriod, true, cur + 1},
		{"expired: two steps old", -2 * TOTPPeriod, false, 0},
		{"two steps ahead", 2 * TOTPPeriod, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			step, err := verifyTOTP(secret, TOTPCode(secret, now.Add(tc.at)), now)
			if (err == nil) != tc.ok || step != tc.step {
				t.Fatalf("verifyTOTP = %d, %v; want ok=%v step %d", step, err, tc.ok, tc.step)
			}
		})
	}
	for _, code := range []string{"", "12345", "1234567", "12345a", " 12345", "１２３４５６", "-12345"} {
		if _, err := verifyTOTP(secret, code, now); err == nil {
			t.Errorf("malformed code %q accepted", code)
		}
	}
	if _, err := verifyTOTP([]byte("another secret......"), TOTPCode(secret, now), now); err == nil {
		t.Error("code of another secret accepted")
	}
}

func TestOTPAuthURIFormat(t *testing.T) {
	got := OTPAuthURI("alice", []byte("12345678901234567890"))
	want := "otpauth://totp/Airlock:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Airlock&algorithm=SHA1&digits=6&period=30"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func FuzzVerifyTOTP(f *testing.F) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1_700_000_000, 0)
	f.Add(TOTPCode(secret, now))
	f.Add("000000")
	f.Add("12345")
	f.Fuzz(func(t *testing.T, code string) {
		step, err := verifyTOTP(secret, code, now)
		if err == nil {
			if len(code) != TOTPDigits || strings.Trim(code, "0123456789") != "" {
				t.Fatalf("accepted malformed code %q", code)
			}
			if d := step - TOTPStep(now); d < -TOTPSkew || d > TOTPSkew {
				t.Fatalf("accepted step %d outside the window", step)
			}
		}
	})
}
