package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeviceBuildCarriesNoVendorOrServerCode checks the architecture rule
// that a device carries verification code only: the device build of
// airlock (-tags airlock_device) imports neither the vendor side (repo,
// audit), nor the server side (server, rollout, store drivers), nor the
// simulator.
func TestDeviceBuildCarriesNoVendorOrServerCode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-tags", "airlock_device", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/airlockfw/airlock/repo", "github.com/airlockfw/airlock/server", "github.com/airlockfw/airlock/rollout",
		"github.com/airlockfw/airlock/audit", "github.com/airlockfw/airlock/sim",
		"github.com/jackc/pgx", "modernc.org/sqlite", "github.com/prometheus/",
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
				t.Errorf("the device build imports %s", d)
			}
		}
	}
	for _, want := range []string{"github.com/airlockfw/airlock/device", "github.com/airlockfw/airlock/agent", "github.com/airlockfw/airlock/trust"} {
		found := false
		for _, d := range deps {
			found = found || d == want
		}
		if !found {
			t.Errorf("the device build lacks %s", want)
		}
	}
}

// TestDeviceBuildLinksNoTUFLibrary checks the dependency diet: the device
// verifies metadata with package trust's own types and canonical JSON, so
// its build links neither go-tuf nor what go-tuf's metadata package
// imports for its signature verifiers (sigstore, protobuf, genproto,
// go-containerregistry) nor securesystemslib.
func TestDeviceBuildLinksNoTUFLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-tags", "airlock_device", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/theupdateframework/go-tuf", "github.com/sigstore", "google.golang.org/protobuf",
		"google.golang.org/genproto", "github.com/google/go-containerregistry", "github.com/secure-systems-lab",
	}
	for _, d := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the device build imports %s", d)
			}
		}
	}
}
