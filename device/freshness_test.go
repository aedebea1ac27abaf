package device

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// TestOfflineBundleFreshness: a bundle installs long after its one-day
// timestamp expired (until its product role expires), unless the device
// requires timestamp freshness of bundles; a refused bundle changes
// nothing and says it is too old.
func TestOfflineBundleFreshness(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name      string
		freshness string
		age       time.Duration
		want      error
	}{
		{"default policy, fresh", "", 0, nil},
		{"default policy, a month old", "", 30 * day, nil},
		{"default policy, past the product role", FreshnessRelease, 181 * day, verify.ErrBundleExpired},
		{"timestamp policy, fresh", FreshnessTimestamp, 0, nil},
		{"timestamp policy, two days old", FreshnessTimestamp, 2 * day, verify.ErrBundleExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("/dev", 1<<20)
			cfg.BundleFreshness = tc.freshness
			d := provision(t, durable.NewMem(), cfg, v.factoryRoot, b10)
			mustBoot(t, d)
			now := time.Now().Add(tc.age)
			d.opts.Now = func() time.Time { return now }
			before := fingerprint(t, d)
			res, err := installBundle(d, b11, InstallOptions{})
			if tc.want == nil {
				if err != nil || res.Version != "1.1.0" {
					t.Fatalf("install = %+v, %v", res, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "too old") {
				t.Fatalf("install = %v, want %v", err, tc.want)
			}
			if after := fingerprint(t, d); !maps.Equal(before, after) {
				t.Errorf("a refused bundle changed the device:\n%v\n%v", before, after)
			}
		})
	}
}

// TestInstallStaleBundle: after the device saw newer metadata online, an
// older bundle of a release the newer metadata still lists installs, and
// the trusted metadata keeps its newer versions.
func TestInstallStaleBundle(t *testing.T) {
	v := newVendor(t)
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil)
	if _, err := v.r.Timestamp(v.tstamp); err != nil {
		t.Fatal(err)
	}
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, b10)
	mustBoot(t, d)
	if err := d.Refresh(context.Background(), trust.NewDirSource(v.r.PublicDir())); err != nil {
		t.Fatal(err)
	}
	ts := func() string {
		data, err := trust.NewDirStore(d.fsys, d.statePath(trustDir)).Get("timestamp.json")
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	before := ts()
	res, err := installBundle(d, b11, InstallOptions{})
	if err != nil || res.Version != "1.1.0" {
		t.Fatalf("install of a stale bundle whose release is still listed = %+v, %v", res, err)
	}
	if ts() != before {
		t.Error("installing a stale bundle replaced the newer trusted timestamp")
	}
	r := mustBoot(t, d)
	if r.Version != "1.1.0" || !r.Trial {
		t.Fatalf("boot = %+v, want 1.1.0 on trial", r)
	}
}
