package device

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/release"
)

func TestConfigComponentsRoundTrip(t *testing.T) {
	c := testConfig("/dev", 1<<20)
	c.Components = map[string]release.Version{}
	for name, v := range map[string]string{"bootloader": "2.1.0", "acme/modem-m2": "1.4.0-rc.1", "tee.os_v2": "0.3.7+build.5"} {
		pv, err := release.ParseVersion(v)
		if err != nil {
			t.Fatal(err)
		}
		c.Components[name] = pv
	}
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(data, "/dev")
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, data)
	}
	str := func(m map[string]release.Version) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v.String()
		}
		return out
	}
	if diff := cmp.Diff(str(c.Components), str(got.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	// No [components] table: nil, and none written back.
	plain, err := testConfig("/dev", 1<<20).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "components") {
		t.Errorf("a config without components encodes a components table:\n%s", plain)
	}
}

func TestConfigRejectsBadComponents(t *testing.T) {
	valid, err := testConfig("/dev", 1<<20).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var many strings.Builder
	for i := range MaxComponents + 1 {
		fmt.Fprintf(&many, "c%d = \"1.0.0\"\n", i)
	}
	for _, tt := range []struct{ name, table, want string }{
		{"version not semver", `bootloader = "2.1"`, "invalid version"},
		{"version not a string", `bootloader = 2`, "incompatible types"},
		{"empty version", `bootloader = ""`, "invalid version"},
		{"name with a space", `"boot loader" = "1.0.0"`, "not a component name"},
		{"name starting with a dot", `".hidden" = "1.0.0"`, "not a component name"},
		{"bad product ID", `"acme/" = "1.0.0"`, "not a component name"},
		{"own product", `"acme/router-x1" = "1.0.0"`, "the device's own product"},
		{"duplicate name", "bootloader = \"1.0.0\"\nbootloader = \"2.0.0\"", "already been defined"},
		{"too many", many.String(), "the limit is MaxComponents"},
		{"table of tables", "[components.bootloader]\nversion = \"1.0.0\"", "dotted table name [components.…] is not supported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(string(valid)+"\n[components]\n"+tt.table+"\n"), "/dev")
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseConfig = %v, want ErrConfig %q", err, tt.want)
			}
		})
	}
}

func TestParseComponent(t *testing.T) {
	name, v, err := ParseComponent("acme/modem-m2=1.4.0")
	if err != nil || name != "acme/modem-m2" || v.String() != "1.4.0" {
		t.Fatalf("ParseComponent = %q, %q, %v", name, v, err)
	}
	for _, in := range []string{"bootloader", "bootloader=", "=1.0.0", "boot loader=1.0.0", "bootloader>=1.0.0", "bootloader=v1"} {
		if _, _, err := ParseComponent(in); err == nil {
			t.Errorf("ParseComponent(%q) succeeded", in)
		}
	}
}
