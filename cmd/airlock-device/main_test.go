package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"

	"github.com/airlockfw/airlock/internal/depaware"
	"github.com/google/go-cmp/cmp"
)

// TestDeviceCommandSet: the device binary carries exactly these commands;
// no key generation (least of all in an HSM), no repository, no server, and
// no creation of simulated devices (device init runs on a development host).
func TestDeviceCommandSet(t *testing.T) {
	var got []string
	for _, c := range program().Commands() {
		got = append(got, c.Name)
	}
	want := []string{"agent", "device boot", "device health", "device install", "device status", "verify", "version"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("airlock-device commands (-want +got):\n%s", diff)
	}
}

// TestDeviceBuildCarriesNoVendorOrServerCode checks the architecture rule
// that a device carries verification code only: airlock-device imports
// neither the vendor side (repo, audit, key generation, PKCS#11), nor the
// server side (server, rollout, store drivers), nor the simulator, nor a
// TUF library beyond package trust.
func TestDeviceBuildCarriesNoVendorOrServerCode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	deps, err := depaware.List("../..", "airlock-device")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		"github.com/airlockfw/airlock/repo", "github.com/airlockfw/airlock/server", "github.com/airlockfw/airlock/rollout",
		"github.com/airlockfw/airlock/audit", "github.com/airlockfw/airlock/sim", "github.com/airlockfw/airlock/keys/pkcs11",
		"github.com/airlockfw/airlock/internal/cli/vendorcmd", "github.com/airlockfw/airlock/internal/cli/servercmd",
		"github.com/airlockfw/airlock/internal/demo",
		"github.com/airlockfw/airlock/keys/tufsign",
		"github.com/miekg/pkcs11", "github.com/jackc/pgx", "modernc.org/sqlite", "github.com/prometheus/",
		// The dependency diet: the device verifies metadata with package
		// trust's own types and canonical JSON, so it links neither go-tuf
		// nor what go-tuf's metadata package imports for its signature
		// verifiers, nor securesystemslib.
		"github.com/theupdateframework/go-tuf", "github.com/sigstore", "google.golang.org/protobuf",
		"google.golang.org/genproto", "github.com/google/go-containerregistry", "github.com/secure-systems-lab",
		// Config files are parsed by internal/strictoml's own TOML subset;
		// BurntSushi/toml is only its differential-test oracle.
		"github.com/BurntSushi/toml",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
				t.Errorf("the device build imports %s", d)
			}
		}
	}
	for _, want := range []string{"github.com/airlockfw/airlock/device", "github.com/airlockfw/airlock/agent", "github.com/airlockfw/airlock/trust"} {
		if !slices.Contains(deps, want) {
			t.Errorf("the device build lacks %s", want)
		}
	}
}

// TestDependencies fails when airlock-device gains or loses a dependency
// against the committed cmd/airlock-device/depaware.txt.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	d, err := depaware.Diff("../..", "airlock-device")
	if err != nil {
		t.Fatal(err)
	}
	if d != "" {
		t.Fatal(d)
	}
}

// TestDeviceHelp: the device binary's help works as airlock's: its one group
// lists its commands with exit 0, and a vendor group is unknown (exit 2).
func TestDeviceHelp(t *testing.T) {
	tests := []struct {
		args []string
		code int
		in   string
	}{
		{[]string{"device", "--help"}, cli.ExitOK, "airlock-device device install"},
		{[]string{"device", "-h"}, cli.ExitOK, "airlock-device device status"},
		{[]string{"help", "device"}, cli.ExitOK, "airlock-device device boot"},
		{[]string{"help", "version"}, cli.ExitOK, "Usage: airlock version"},
		{[]string{"version"}, cli.ExitOK, "airlock-device "},
		{[]string{"repo", "--help"}, cli.ExitUsage, `airlock: error: unknown command "repo"`},
		{[]string{"device", "nosuch"}, cli.ExitUsage, `airlock: error: unknown command "device nosuch"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := program().RunEnv(&cli.Env{Ctx: context.Background(), Stdout: &out, Stderr: &errb}, tt.args)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.in) {
			t.Errorf("airlock-device %s: exit %d (want %d), output lacks %q\nstdout: %s\nstderr: %s",
				strings.Join(tt.args, " "), code, tt.code, tt.in, out.String(), errb.String())
		}
	}
}
