package device

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/durable"
)

// TestDevReleaseRefusedByProdDevice: development, staging and production are
// separate roots. A release signed in the dev repository and offered to a
// device provisioned with the prod root is refused, with a message saying
// it is the wrong environment, and nothing on the device changes.
func TestDevReleaseRefusedByProdDevice(t *testing.T) {
	prod := newVendorEnv(t, "prod")
	dev := newVendorEnv(t, "dev")
	b10 := prod.release("1.0.0", 1, testImage(1, imgSize), nil)
	devBundle := dev.release("1.1.0", 1, testImage(2, imgSize), nil)

	cfg := testConfig("/dev", 1<<20)
	fsys := durable.NewMem()
	d := provision(t, fsys, cfg, prod.factoryRoot, b10)
	mustBoot(t, d)
	if got := d.Environment(); got != "prod" {
		t.Fatalf("device environment = %q, want prod", got)
	}
	before := fingerprint(t, d)
	_, err := installBundle(d, devBundle, InstallOptions{})
	if !errors.Is(err, ErrEnvironment) {
		t.Fatalf("err = %v, want ErrEnvironment", err)
	}
	if !strings.Contains(err.Error(), "signed for the dev environment") || !strings.Contains(err.Error(), "prod") {
		t.Fatalf("message does not say which environments: %v", err)
	}
	// The refusal names the environment, not the failure it caused.
	for _, stale := range []string{"target not found", "signature threshold"} {
		if strings.Contains(err.Error(), stale) {
			t.Fatalf("environment refusal ends in %q: %v", stale, err)
		}
	}
	var ie *InstallError
	if !errors.As(err, &ie) || ie.Check != CheckMetadata {
		t.Fatalf("err = %#v, want the metadata check", err)
	}
	if after := fingerprint(t, d); !equalMaps(before, after) {
		t.Fatalf("device state changed by a refused install:\nbefore %v\nafter  %v", before, after)
	}
	// A prod release still installs.
	if _, err := installBundle(d, prod.release("1.1.0", 1, testImage(3, imgSize), nil), InstallOptions{}); err != nil {
		t.Fatalf("prod release: %v", err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
