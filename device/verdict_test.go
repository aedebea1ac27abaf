package device

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// verdictCase is one input offered to a device and to the verifier.
type verdictCase struct {
	name string
	// offer builds the device's initial bundle and the offered bundle.
	offer func(t *testing.T, v *vendor) (initial, offer []byte)
	// prod provisions the device with a prod root instead of the vendor's.
	env string
	cfg func(*Config)
	// fresh provisions the device without an image.
	fresh bool
	now   time.Time
	opt   InstallOptions
	// want is the check that refuses it ("" = accepted) and a cause.
	want    string
	wantErr error
}

// Bundle framing edits, as an attacker or a damaged USB stick makes them.
func trailerOf(b []byte) int { return len(b) - bundle.TrailerSize }

func verdictCases() []verdictCase {
	img := func(seed uint64) []byte { return testImage(seed, imgSize) }
	base := func(t *testing.T, v *vendor) []byte { return v.release("1.0.0", 1, img(1), nil) }
	next := func(mod func(*repo.ReleaseOptions)) func(t *testing.T, v *vendor) ([]byte, []byte) {
		return func(t *testing.T, v *vendor) ([]byte, []byte) {
			b10 := base(t, v)
			return b10, v.release("1.1.0", 1, img(2), mod)
		}
	}
	zstd := func(o *repo.ReleaseOptions) { o.Compress = repo.CompressZstd }
	editBundle := func(mod func(*repo.ReleaseOptions), edit func(t *testing.T, v *vendor, b []byte) []byte) func(t *testing.T, v *vendor) ([]byte, []byte) {
		return func(t *testing.T, v *vendor) ([]byte, []byte) {
			b10, b11 := next(mod)(t, v)
			return b10, edit(t, v, b11)
		}
	}
	payloadEdit := func(mod func(*repo.ReleaseOptions), edit func([]byte) []byte) func(t *testing.T, v *vendor) ([]byte, []byte) {
		return editBundle(mod, func(t *testing.T, v *vendor, b []byte) []byte {
			m, p := repotest.ParseBundle(t, b)
			return repotest.BuildBundle(t, m, edit(p))
		})
	}
	// targetEdit changes the offered target (p is its payload) as a
	// product key holder with the online keys can.
	targetEdit := func(edit func(tf *metadata.TargetFiles, p []byte)) func(t *testing.T, v *vendor) ([]byte, []byte) {
		return editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte {
			m, p := repotest.ParseBundle(t, b)
			v.rt.EditRole(t, m, func(md *metadata.Metadata[metadata.TargetsType]) {
				edit(md.Signed.Targets[m.TargetPath], p)
			}, v.product[0])
			return repotest.BuildBundle(t, m, p)
		})
	}
	return []verdictCase{
		{name: "accepted: raw release", offer: next(nil)},
		{name: "accepted: zstd release", offer: next(zstd)},
		{name: "accepted: dependency satisfied", offer: next(func(o *repo.ReleaseOptions) { o.Depends = []string{"bootloader>=2.0.0"} }),
			cfg: func(c *Config) { c.Components = map[string]release.Version{"bootloader": mustVersion("2.1.0")} }},
		{name: "accepted: signed downgrade asked for", opt: InstallOptions{AllowDowngrade: true},
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b11 := v.release("1.1.0", 1, img(1), nil)
				return b11, v.release("1.0.1", 1, img(2), func(o *repo.ReleaseOptions) { o.AllowDowngrade = true })
			}},
		{name: "accepted: sha512 beside sha256", offer: targetEdit(func(tf *metadata.TargetFiles, p []byte) {
			// A sha512 of the same bytes beside the sha256: both verified.
			h := sha512.Sum512(p)
			tf.Hashes["sha512"] = h[:]
		})},

		// Class 1: the bundle is read to its end on every path.
		{name: "trailing bytes after the trailer", want: CheckFormat, wantErr: bundle.ErrTrailer,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte { return append(b, "junk"...) })},
		{name: "missing trailer", want: CheckFormat, wantErr: bundle.ErrTruncated,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte { return b[:trailerOf(b)] })},
		{name: "wrong trailer length", want: CheckFormat, wantErr: bundle.ErrTrailer,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte {
				b[trailerOf(b)+len(bundle.TrailerMagic)+7] ^= 1
				return b
			})},
		{name: "extra payload before the trailer", want: CheckFormat, wantErr: bundle.ErrTrailer,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte {
				i := trailerOf(b)
				return append(append(append([]byte{}, b[:i]...), make([]byte, 100)...), b[i:]...)
			})},
		{name: "damaged trailer digest", want: CheckFormat, wantErr: bundle.ErrTrailer,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{name: "damaged trailer digest, zstd", want: CheckFormat, wantErr: bundle.ErrTrailer,
			offer: editBundle(zstd, func(t *testing.T, v *vendor, b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{name: "truncated payload", want: CheckFormat, wantErr: bundle.ErrTruncated,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte { return b[:len(b)-5000] })},
		{name: "not a bundle", want: CheckFormat, wantErr: bundle.ErrMagic,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte { b[0] ^= 0xff; return b })},
		{name: "damaged header", want: CheckFormat, wantErr: bundle.ErrHeaderDigest,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte { b[100] ^= 1; return b })},

		// Class 4: unverified bytes are judged by the signed digest first.
		{name: "tampered payload", want: CheckPayload, wantErr: payload.ErrHash,
			offer: payloadEdit(nil, func(p []byte) []byte { p[len(p)/2] ^= 1; return p })},
		{name: "tampered payload, zstd", want: CheckPayload, wantErr: payload.ErrHash,
			offer: payloadEdit(zstd, func(p []byte) []byte { p[len(p)/2] ^= 1; return p })},
		{name: "swapped payload, zstd", want: CheckPayload, wantErr: payload.ErrHash,
			offer: payloadEdit(zstd, func(p []byte) []byte { return bytes.Repeat([]byte{0x5a}, len(p)) })},
		{name: "swapped shorter payload, zstd", want: CheckPayload, wantErr: payload.ErrLength,
			offer: payloadEdit(zstd, func(p []byte) []byte { return p[:len(p)/2] })},
		{name: "endless payload, zstd", want: CheckPayload, wantErr: payload.ErrLength,
			offer: payloadEdit(zstd, func(p []byte) []byte { return append(p, make([]byte, 1<<16)...) })},
		{name: "endless payload", want: CheckPayload, wantErr: payload.ErrLength,
			offer: payloadEdit(nil, func(p []byte) []byte { return append(p, make([]byte, 1<<16)...) })},

		// Metadata.
		{name: "timestamp signed by an unknown key", want: CheckMetadata, wantErr: trust.ErrThreshold,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte {
				m, p := repotest.ParseBundle(t, b)
				m.Timestamp = repotest.Resign(t, m.Timestamp, func(md *metadata.Metadata[metadata.TimestampType]) { md.Signed.Version++ }, genKey(t))
				return repotest.BuildBundle(t, m, p)
			})},
		{name: "expired metadata", want: CheckMetadata, wantErr: trust.ErrExpired, now: time.Now().AddDate(3, 0, 0), offer: next(nil)},
		// A bundle older than the device's metadata is judged against the
		// device's metadata (docs/bundle-format.md, "Freshness").
		{name: "stale bundle, release still listed", want: CheckPolicy, wantErr: release.ErrDowngrade,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := base(t, v)
				v.release("1.1.0", 1, img(2), nil)
				return v.bundle("1.1.0"), b10 // the device trusts newer metadata than the offer's
			}},
		{name: "stale bundle, release withdrawn", want: CheckTarget, wantErr: verify.ErrStaleBundle,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := base(t, v)
				m, p := repotest.ParseBundle(t, v.release("1.1.0", 1, img(2), nil))
				v.rt.EditRole(t, m, func(md *metadata.Metadata[metadata.TargetsType]) {
					for path := range md.Signed.Targets {
						if strings.Contains(path, "/1.0.0/") {
							delete(md.Signed.Targets, path)
						}
					}
				}, v.product[0])
				return repotest.BuildBundle(t, m, p), b10
			}},
		{name: "mix and match", want: CheckMetadata, wantErr: trust.ErrMixAndMatch, fresh: true,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				// New product role, old snapshot and timestamp, offered to
				// a device that trusts only its root.
				b10 := base(t, v)
				old, _ := repotest.ParseBundle(t, b10)
				m, p := repotest.ParseBundle(t, v.release("1.1.0", 1, img(2), nil))
				m.Timestamp, m.Snapshot = old.Timestamp, old.Snapshot
				return nil, repotest.BuildBundle(t, m, p)
			}},
		{name: "release of another trust environment", env: "prod", want: CheckMetadata, wantErr: verify.ErrEnvironment,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				return nil, v.release("1.1.0", 1, img(2), nil) // a dev release; the device trusts a prod root
			}},

		// Target lookup and hash policy (class 6, class 8).
		{name: "product key signs outside its delegation", want: CheckTarget, wantErr: trust.ErrOutsideDelegation,
			offer: editBundle(nil, func(t *testing.T, v *vendor, b []byte) []byte {
				m, p := repotest.ParseBundle(t, b)
				other := "acme/other-y2/1.1.0/firmware.img"
				v.rt.EditRole(t, m, func(md *metadata.Metadata[metadata.TargetsType]) {
					tf := md.Signed.Targets[m.TargetPath]
					tf.Path = other
					md.Signed.Targets[other] = tf
				}, v.product[0])
				m.TargetPath = other
				return repotest.BuildBundle(t, m, p)
			})},
		{name: "unknown hash algorithm beside a good sha256", want: CheckTarget, wantErr: verify.ErrHashPolicy,
			offer: targetEdit(func(tf *metadata.TargetFiles, _ []byte) { tf.Hashes["md5"] = make([]byte, 16) })},
		// Schema 2: the payload is verified against the signed block index
		// (every byte, before use), not the file's whole digests, which stay
		// in the target for generic TUF clients and the bundle trailer.
		{name: "accepted: wrong sha512 beside a good sha256 (schema 2 checks the index)",
			offer: targetEdit(func(tf *metadata.TargetFiles, _ []byte) { tf.Hashes["sha512"] = make([]byte, 64) })},
		{name: "sha1 only", want: CheckTarget, wantErr: verify.ErrHashPolicy,
			offer: targetEdit(func(tf *metadata.TargetFiles, _ []byte) { tf.Hashes = metadata.Hashes{"sha1": make([]byte, 20)} })},
		{name: "release signed by a revoked key", want: CheckMetadata, wantErr: trust.ErrSignature,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := base(t, v)
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
			}},

		// Policy.
		{name: "wrong model", want: CheckPolicy, wantErr: release.ErrModel,
			offer: next(func(o *repo.ReleaseOptions) { o.Models = []string{"x2"} })},
		{name: "hardware revision out of range", want: CheckPolicy, wantErr: release.ErrHWRev,
			offer: next(func(o *repo.ReleaseOptions) { o.HWRev = ">=4" })},
		{name: "other channel", want: CheckPolicy, wantErr: release.ErrChannel,
			offer: next(func(o *repo.ReleaseOptions) { o.Channel = "beta" })},
		{name: "dependency the device lacks", want: CheckPolicy, wantErr: release.ErrDependency,
			offer: next(func(o *repo.ReleaseOptions) { o.Depends = []string{"bootloader>=2.0.0"} })},
		{name: "dependency too old", want: CheckPolicy, wantErr: release.ErrDependency,
			offer: next(func(o *repo.ReleaseOptions) { o.Depends = []string{"bootloader>=2.0.0"} }),
			cfg:   func(c *Config) { c.Components = map[string]release.Version{"bootloader": mustVersion("1.9.0")} }},
		{name: "downgrade to an older version", want: CheckPolicy, wantErr: release.ErrDowngrade,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b11, v.bundle("1.0.0") // fresh metadata, older version
			}},
		{name: "downgrade the operator asks for but the metadata does not allow", want: CheckPolicy, wantErr: release.ErrDowngrade,
			opt: InstallOptions{AllowDowngrade: true},
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				v.release("1.0.0", 1, img(1), nil)
				b11 := v.release("1.1.0", 1, img(2), nil)
				return b11, v.bundle("1.0.0")
			}},
		{name: "signed downgrade the operator did not ask for", want: CheckPolicy, wantErr: release.ErrDowngrade,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b11 := v.release("1.1.0", 1, img(1), nil)
				return b11, v.release("1.0.1", 1, img(2), func(o *repo.ReleaseOptions) { o.AllowDowngrade = true })
			}},
		{name: "security version below the counter", want: CheckPolicy, wantErr: release.ErrSecurityVersion,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				b10 := v.release("1.0.0", 5, img(1), nil)
				return b10, v.release("1.1.0", 4, img(2), nil)
			}},
		// Sizes: the installed image against the slot (1 MiB here), the
		// payload against the transport limit; never the payload against
		// the slot.
		{name: "bundle larger than the slot", want: CheckSlot, wantErr: verify.ErrSlotTooSmall,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				// Uncompressed: the payload is the image, refused as an
				// image that does not fit, not as a malformed bundle.
				return base(t, v), v.release("1.1.0", 1, testImage(2, 2<<20), nil)
			}},
		{name: "image larger than the slot", want: CheckSlot, wantErr: verify.ErrSlotTooSmall,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				// Compressed, the payload fits the slot; installed, it does not.
				return base(t, v), v.release("1.1.0", 1, testImage(2, 3<<19), zstd)
			}},
		{name: "zstd payload fits the slot, installed image one byte over", want: CheckSlot, wantErr: verify.ErrSlotTooSmall,
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				return base(t, v), v.release("1.1.0", 1, testImage(2, 1<<20+1), zstd)
			}},
		{name: "accepted: zstd payload larger than the slot, installed image fits",
			offer: func(t *testing.T, v *vendor) ([]byte, []byte) {
				// Incompressible: zstd makes the payload a little larger
				// than the image, which fills the slot exactly.
				b10 := base(t, v)
				// 253 blocks and their 3-block tree fill the 1 MiB slot.
				b := v.release("1.1.0", 1, noise(2, 1<<20-3*4096), zstd)
				m, _ := repotest.ParseBundle(t, b)
				if m.PayloadLength <= 1<<20 {
					t.Fatalf("internal error: the payload is %d bytes, want more than the slot", m.PayloadLength)
				}
				return b10, b
			}},
	}
}

// noise is an incompressible image of n bytes.
func noise(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustVersion(s string) release.Version {
	v, err := release.ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// TestVerdictEquality runs every case of the corpus through `airlock
// verify` (verify.Bundle with the device's facts, factory root and trusted
// metadata: what `verify --device` does) and through the device's install,
// and requires the same verdict: both accept, or both refuse with the same
// check and the same wording. A refusal must also leave the device
// untouched.
func TestVerdictEquality(t *testing.T) { verdicts(t, 0) }

// TestVerdictEqualitySchema1 runs the same cases with schema 1 releases
// (a payload verified by its whole digests at the end of the stream),
// which devices still accept.
func TestVerdictEqualitySchema1(t *testing.T) { verdicts(t, release.SchemaV1) }

// schema1Verdicts change the cases whose outcome differs for schema 1
// releases; a nil change skips the case.
var schema1Verdicts = map[string]func(*verdictCase){
	"accepted: wrong sha512 beside a good sha256 (schema 2 checks the index)": func(tc *verdictCase) {
		tc.name, tc.want, tc.wantErr = "wrong sha512 beside a good sha256", CheckPayload, payload.ErrHash
	},
	// Schema 1 has no tree: the image of that case fits with room to spare.
	"accepted: zstd payload larger than the slot, installed image fits": nil,
}

func verdicts(t *testing.T, schema int) {
	for _, tc := range verdictCases() {
		if schema == release.SchemaV1 {
			if change, ok := schema1Verdicts[tc.name]; ok {
				if change == nil {
					continue
				}
				change(&tc)
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			v := newVendor(t)
			v.schema = schema
			initial, offer := tc.offer(t, v)
			root := v.factoryRoot
			if tc.env != "" {
				prod := newVendorEnv(t, tc.env)
				prod.schema = schema
				root, initial = prod.factoryRoot, prod.release("1.0.0", 1, testImage(9, imgSize), nil)
			}
			cfg := testConfig("/dev", 1<<20)
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			d := provision(t, durable.NewMem(), cfg, root, initial)
			if !tc.fresh {
				mustBoot(t, d)
			}
			if !tc.now.IsZero() {
				d.opts.Now = func() time.Time { return tc.now }
			}
			facts, err := d.Facts()
			if err != nil {
				t.Fatal(err)
			}
			facts.AllowDowngrade = tc.opt.AllowDowngrade
			_, verr := verify.Bundle(context.Background(), bytes.NewReader(offer), verify.Options{
				Root: d.FactoryRoot(), Store: d.PreviewStore(), Facts: facts, Now: tc.now,
			})
			before := fingerprint(t, d)
			_, derr := d.InstallBundle(context.Background(), bytes.NewReader(offer), tc.opt)

			if tc.want == "" {
				if verr != nil || derr != nil {
					t.Fatalf("want accepted; verify: %v; device: %v", verr, derr)
				}
				return
			}
			var ve *verify.Error
			var ie *InstallError
			if !errors.As(verr, &ve) || !errors.As(derr, &ie) {
				t.Fatalf("want both refused by the %s check; verify: %v; device: %v", tc.want, verr, derr)
			}
			if ve.Check != tc.want || ie.Check != tc.want {
				t.Errorf("checks: verify %q, device %q, want %q\nverify: %v\ndevice: %v", ve.Check, ie.Check, tc.want, verr, derr)
			}
			if ve.Err.Error() != ie.Err.Error() {
				t.Errorf("verdicts differ:\nverify: %v\ndevice: %v", ve.Err, ie.Err)
			}
			if tc.wantErr != nil && (!errors.Is(verr, tc.wantErr) || !errors.Is(derr, tc.wantErr)) {
				t.Errorf("want both to wrap %v; verify: %v; device: %v", tc.wantErr, verr, derr)
			}
			if !errors.Is(verr, verify.ErrVerification) || !errors.Is(derr, verify.ErrVerification) {
				t.Errorf("a refusal must wrap verify.ErrVerification; verify: %v; device: %v", verr, derr)
			}
			if strings.Contains(ie.Err.Error(), "decompression failed") && tc.wantErr != payload.ErrCompression {
				t.Errorf("unverified bytes reported as a decompression failure: %v", derr)
			}
			if after := fingerprint(t, d); !equalMaps(before, after) {
				t.Errorf("a refused install changed the device:\nbefore %v\nafter  %v", before, after)
			}
			// The device still boots its committed image.
			if !tc.fresh {
				if r := mustBoot(t, d); r.Trial {
					t.Errorf("boot after a refused install = %+v, want the committed slot", r)
				}
			}
		})
	}
}
