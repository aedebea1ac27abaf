package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/server/store"
)

// TOTP parameters (RFC 6238 with the defaults every authenticator app
// supports). They are fixed: a user cannot choose a weaker algorithm.
const (
	// TOTPHeader carries the code on state-changing admin requests.
	TOTPHeader = adminapi.TOTPHeader
	// TOTPDigits is the code length.
	TOTPDigits = 6
	// TOTPPeriod is the time step X of RFC 6238 section 4.1.
	TOTPPeriod = 30 * time.Second
	// TOTPSkew is how many steps before and after the current one are
	// accepted, for clock drift and typing time (RFC 6238 section 5.2).
	TOTPSkew = 1
	// TOTPSecretSize is the size of a TOTP seed (160 bits, RFC 4226 section 4).
	TOTPSecretSize = 20
	// TOTPIssuer labels codes in authenticator apps.
	TOTPIssuer = "Airlock"
	// MaxTOTPFailures wrong codes within TOTPLockout lock a user's second
	// factor until TOTPLockout has passed since the first of them.
	MaxTOTPFailures = 5
	// TOTPLockout is the window of MaxTOTPFailures.
	TOTPLockout = 5 * time.Minute
	// TOTPPurpose is the KEK seal purpose of TOTP seeds.
	TOTPPurpose = "totp"
)

// Errors of TOTP verification.
var (
	// ErrTOTP: the code is missing, malformed, wrong or outside the window.
	ErrTOTP = errors.New("invalid or expired totp code")
	// ErrTOTPNotEnrolled: the user has no TOTP secret.
	ErrTOTPNotEnrolled = errors.New("totp is not enrolled for this user")
)

// hotp is RFC 4226 section 5.3: HMAC-SHA-1 of the big-endian counter,
// dynamic truncation, modulo 10^digits, zero-padded.
func hotp(secret []byte, counter uint64, digits int) string {
	mac := hmac.New(sha1.New, secret)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, bin%mod)
}

// TOTPStep returns the RFC 6238 time step T of t (T0 = 0).
func TOTPStep(t time.Time) int64 { return t.Unix() / int64(TOTPPeriod/time.Second) }

// TOTPCode returns the code of secret at time t.
func TOTPCode(secret []byte, t time.Time) string {
	return hotp(secret, uint64(TOTPStep(t)), TOTPDigits)
}

// verifyTOTP checks code against the steps now-TOTPSkew..now+TOTPSkew in
// constant time (every step is computed and compared) and returns the
// matching step. The caller must still refuse a replayed step.
func verifyTOTP(secret []byte, code string, now time.Time) (int64, error) {
	if len(code) != TOTPDigits {
		return 0, fmt.Errorf("%w: want %d digits", ErrTOTP, TOTPDigits)
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, fmt.Errorf("%w: want %d digits", ErrTOTP, TOTPDigits)
		}
	}
	cur := TOTPStep(now)
	var match int64
	for s := cur - TOTPSkew; s <= cur+TOTPSkew; s++ {
		ok := subtle.ConstantTimeCompare([]byte(hotp(secret, uint64(s), TOTPDigits)), []byte(code))
		match = int64(subtle.ConstantTimeSelect(ok, int(s), int(match)))
	}
	if match <= 0 {
		return 0, ErrTOTP
	}
	return match, nil
}

// NewTOTPSecret returns a random TOTPSecretSize-byte seed.
func NewTOTPSecret() ([]byte, error) {
	b := make([]byte, TOTPSecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("failed to generate totp secret: %w", err)
	}
	return b, nil
}

// OTPAuthURI returns the otpauth:// URI (Key Uri Format) that authenticator
// apps import, for the user name and secret.
func OTPAuthURI(name string, secret []byte) string {
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	return fmt.Sprintf("otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=%d&period=%d",
		TOTPIssuer, url.PathEscape(name), b32, url.QueryEscape(TOTPIssuer), TOTPDigits, int(TOTPPeriod/time.Second))
}

// EnrollTOTP gives the named user a new TOTP secret, sealed with kek in st
// (replacing any previous one), and returns the otpauth:// URI to show the
// user once. The secret itself is never stored in the clear.
func EnrollTOTP(ctx context.Context, st store.Store, kek *KEK, name string) (uri string, err error) {
	u, err := st.GetUserByName(ctx, name)
	if err != nil {
		return "", err
	}
	secret, err := NewTOTPSecret()
	if err != nil {
		return "", err
	}
	sealed, err := kek.Seal(TOTPPurpose, u.ID, secret)
	if err != nil {
		return "", err
	}
	if err := st.SetUserTOTP(ctx, u.ID, sealed); err != nil {
		return "", err
	}
	return OTPAuthURI(u.Name, secret), nil
}
