package device

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/trust"
)

// rebundle rewrites a bundle with its payload changed by edit (and a valid
// bundle trailer, as an attacker would write it).
func rebundle(t *testing.T, b []byte, edit func([]byte) []byte) []byte {
	t.Helper()
	br, err := bundle.NewReader(bytes.NewReader(b), bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := io.ReadAll(br.Payload())
	if err != nil {
		t.Fatal(err)
	}
	p = edit(p)
	m := *br.Metadata()
	m.PayloadLength = int64(len(p))
	var out bytes.Buffer
	if err := bundle.Write(&out, &m, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestRefusedInstallChangesNothing proves each attack or mismatch is refused
// with a message naming the check, and that the active slot, the trusted
// metadata and the anti-rollback counter stay byte-for-byte unchanged.
func TestRefusedInstallChangesNothing(t *testing.T) {
	img := func(seed uint64) []byte { return testImage(seed, imgSize) }
	tests := []struct {
		name string
		// setup returns the device's initial bundle and the offered one.
		setup     func(t *testing.T, v *vendor) (initial, offer []byte)
		now       time.Time
		opt       InstallOptions
		wantCheck string
		wantErr   error
	}{
		{
			name: "tampered payload",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b10, rebundle(t, b11, func(p []byte) []byte { p[1000] ^= 1; return p })
			},
			wantCheck: CheckPayload, wantErr: payload.ErrHash,
		},
		{
			name: "payload with bytes appended",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b10, rebundle(t, b11, func(p []byte) []byte { return append(p, 0) })
			},
			wantCheck: CheckPayload, wantErr: payload.ErrLength,
		},
		{
			name: "truncated bundle",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b10, b11[:len(b11)-5000]
			},
			wantCheck: CheckPayload, wantErr: bundle.ErrTruncated,
		},
		{
			name: "wrong model",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				return b10, v.release("1.1.0", 1, img(2), func(o *repo.ReleaseOptions) { o.Models = []string{"x2"} })
			},
			wantCheck: CheckPolicy, wantErr: release.ErrModel,
		},
		{
			name: "hardware revision out of range",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				return b10, v.release("1.1.0", 1, img(2), func(o *repo.ReleaseOptions) { o.HWRev = ">=5" })
			},
			wantCheck: CheckPolicy, wantErr: release.ErrHWRev,
		},
		{
			name: "downgrade to an older version",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b11, v.bundle("1.0.0") // fresh metadata, older version
			},
			wantCheck: CheckPolicy, wantErr: release.ErrDowngrade,
		},
		{
			name: "downgrade the operator asks for but the metadata does not allow",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b11, v.bundle("1.0.0")
			},
			opt:       InstallOptions{AllowDowngrade: true},
			wantCheck: CheckPolicy, wantErr: release.ErrDowngrade,
		},
		{
			name: "older security version",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 2, img(1), nil)
				return b10, v.release("1.1.0", 1, img(2), nil)
			},
			wantCheck: CheckPolicy, wantErr: release.ErrSecurityVersion,
		},
		{
			name: "release signed by a revoked key",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				v.release("1.1.0", 1, img(2), func(o *repo.ReleaseOptions) { o.Signers = v.product[1:] })
				id, err := keys.KeyID(v.product[1].Public())
				if err != nil {
					t.Fatal(err)
				}
				if err := v.r.Revoke(testProduct, id, v.targets); err != nil {
					t.Fatal(err)
				}
				v.publish()
				return b10, v.bundle("1.1.0")
			},
			wantCheck: CheckMetadata, wantErr: trust.ErrSignature,
		},
		{
			name: "metadata replay",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				v.publish() // newer timestamp
				return v.bundle("1.0.0"), b11
			},
			wantCheck: CheckMetadata, wantErr: trust.ErrRollback,
		},
		{
			name: "expired metadata (freeze)",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				return b10, v.release("1.1.0", 1, img(2), nil)
			},
			now:       time.Now().AddDate(3, 0, 0),
			wantCheck: CheckMetadata, wantErr: trust.ErrExpired,
		},
		{
			name: "image larger than the slot",
			setup: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 1, img(1), nil)
				return b10, v.release("1.1.0", 1, testImage(2, 2<<20), nil)
			},
			wantCheck: CheckSlot,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVendor(t)
			initial, offer := tt.setup(t, v)
			d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, initial)
			mustBoot(t, d)
			if !tt.now.IsZero() {
				d.opts.Now = func() time.Time { return tt.now }
			}
			before := fingerprint(t, d)
			_, err := installBundle(d, offer, tt.opt)
			if err == nil {
				t.Fatal("install succeeded, want refusal")
			}
			t.Logf("refused: %v", err)
			var ie *InstallError
			if !errors.As(err, &ie) {
				// A bundle whose header cannot be read never reaches the pipeline.
				if tt.wantErr == nil || !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v is not an *InstallError", err)
				}
			} else if ie.Check != tt.wantCheck {
				t.Errorf("check = %q, want %q (error: %v)", ie.Check, tt.wantCheck, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(before, fingerprint(t, d)); diff != "" {
				t.Errorf("refused install changed trusted state (-before +after):\n%s", diff)
			}
			// The device still boots its committed image.
			if r := mustBoot(t, d); r.Trial {
				t.Errorf("boot after a refused install = %+v, want the committed slot", r)
			}
		})
	}
}

// TestSignedDowngradeNeedsBothSignatureAndOperator proves a downgrade is
// possible only with the release's signed allow_downgrade AND the
// operator's AllowDowngrade.
func TestSignedDowngradeNeedsBothSignatureAndOperator(t *testing.T) {
	v := newVendor(t)
	b11 := v.release("1.1.0", 1, testImage(1, imgSize), nil)
	b10 := v.release("1.0.1", 1, testImage(2, imgSize), func(o *repo.ReleaseOptions) { o.AllowDowngrade = true })
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, b11)
	mustBoot(t, d)
	if _, err := installBundle(d, b10, InstallOptions{}); !errors.Is(err, release.ErrDowngrade) {
		t.Fatalf("downgrade without the operator flag: %v, want ErrDowngrade", err)
	}
	if _, err := installBundle(d, b10, InstallOptions{AllowDowngrade: true}); err != nil {
		t.Fatalf("signed downgrade with the operator flag: %v", err)
	}
}
