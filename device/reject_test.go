package device

import (
	"errors"
	"testing"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
)

// The attacks and mismatches a device refuses, each leaving the active
// slot, the trusted metadata and the counter unchanged, are the corpus of
// TestVerdictEquality (verdict_test.go), which also checks that `airlock
// verify` refuses them with the same words.

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
