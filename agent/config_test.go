package agent

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
)

const validConfig = `device_config = "device.toml"
server = "https://updates.example.com:8443"
server_ca = "server-ca.pem"
server_ca_sha256 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
enrollment_token_file = "enroll.token"
identity_dir = "/var/lib/airlock/identity"
poll_interval = "30m"
max_backoff = "2h"
download_timeout = "1h"
stall_timeout = "45s"
min_throughput = 4096
reboot_command = ["systemctl", "reboot"]
progress = "log"
director_root = "director-root.json"
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(validConfig), "/etc/airlock")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Dir: "/etc/airlock", DeviceConfig: "device.toml", Server: "https://updates.example.com:8443",
		ServerCA: "server-ca.pem", ServerCASHA256: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		EnrollmentTokenFile: "enroll.token", IdentityDir: "/var/lib/airlock/identity",
		PollInterval: 30 * time.Minute, MaxBackoff: 2 * time.Hour, DownloadTimeout: time.Hour, StallTimeout: 45 * time.Second,
		MinThroughput: 4096, RebootCommand: []string{"systemctl", "reboot"}, Progress: ProgressLog, DirectorRoot: "director-root.json",
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got := c.Path(c.DeviceConfig); got != "/etc/airlock/device.toml" {
		t.Errorf("Path = %q", got)
	}
	if got := c.Path(c.IdentityDir); got != "/var/lib/airlock/identity" {
		t.Errorf("Path of an absolute path = %q", got)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("device_config = \"d.toml\"\nmetadata_url = \"https://cdn.example.com/m\"\ntargets_url = \"https://cdn.example.com/t\"\n"), "/x")
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval != DefaultPollInterval || c.MaxBackoff != DefaultMaxBackoff || c.DownloadTimeout != DefaultDownloadTimeout ||
		c.StallTimeout != DefaultStallTimeout || c.MinThroughput != DefaultMinThroughput || c.Progress != ProgressAuto {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := []struct {
		name, edit, want string
	}{
		{"unknown key", "serverr = \"x\"\n", "unknown keys"},
		{"http server", `server = "http://updates.example.com"`, "not https"},
		{"server with credentials", `server = "https://u:p@updates.example.com"`, "credentials"},
		{"server with query", `server = "https://updates.example.com/?a=b"`, "query"},
		{"short pin", `server_ca_sha256 = "0011"`, "64 lowercase hex"},
		{"uppercase pin", `server_ca_sha256 = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff"`, "64 lowercase hex"},
		{"zero poll", `poll_interval = "0s"`, ""},
		{"tiny poll", `poll_interval = "1ms"`, "poll_interval"},
		{"huge backoff", `max_backoff = "9000h"`, "max_backoff"},
		{"bad duration", `stall_timeout = "soon"`, "stall_timeout"},
		{"empty reboot command", `reboot_command = [""]`, "reboot_command[0]"},
		{"bad progress", `progress = "fancy"`, "progress"},
		{"negative min throughput", `min_throughput = -1`, "min_throughput"},
		{"huge min throughput", `min_throughput = 2147483648`, "min_throughput"},
		{"min throughput with a unit", `min_throughput = "1KiB"`, "min_throughput"},
		{"no device config", `device_config = ""`, "device_config is required"},
		{"no identity dir", `identity_dir = ""`, "identity_dir is required"},
		{"duplicate key", "server = \"https://a.example\"\nserver = \"https://b.example\"", "server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig
			key, _, _ := strings.Cut(tt.edit, " = ")
			var lines []string
			for _, l := range strings.Split(cfg, "\n") {
				if !strings.HasPrefix(l, key+" = ") {
					lines = append(lines, l)
				}
			}
			cfg = strings.Join(lines, "\n") + "\n" + tt.edit + "\n"
			_, err := ParseConfig([]byte(cfg), "/etc/airlock")
			if tt.name == "zero poll" {
				if err != nil { // 0 means the default
					t.Fatalf("poll_interval = 0s: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := ParseConfig([]byte(strings.Repeat("#", MaxConfigSize+1)), "/"); !errors.Is(err, ErrConfig) {
		t.Errorf("oversized config: %v", err)
	}
	if _, err := ParseConfig([]byte("device_config = \"d\"\n"), "/"); err == nil || !strings.Contains(err.Error(), "metadata_url and targets_url are required") {
		t.Errorf("repository-only config without URLs: %v", err)
	}
	repoOnly := "device_config = \"d\"\nmetadata_url = \"https://cdn.example.com/m\"\ntargets_url = \"https://cdn.example.com/t\"\ndirector_root = \"r.json\"\n"
	if _, err := ParseConfig([]byte(repoOnly), "/"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "director_root") {
		t.Errorf("director_root without a server: %v", err)
	}
}

func TestServerCAFileChecks(t *testing.T) {
	p := newPKI(t, "a")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("ca.pem", p.caPEM)
	tests := []struct {
		name, path, pin string
		ok              bool
	}{
		{"valid", good, "", true},
		{"valid pinned", good, p.fingerprint(), true},
		{"pin not in the file", good, newPKI(t, "b").fingerprint(), false},
		{"trailing garbage", write("trail.pem", append(append([]byte{}, p.caPEM...), "junk"...)), "", false},
		{"private key block", write("key.pem", p.srvKey), "", false},
		{"empty", write("empty.pem", nil), "", false},
		{"missing", filepath.Join(dir, "nope.pem"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadCAPool(durable.OS, tt.path, tt.pin)
			if (err == nil) != tt.ok {
				t.Fatalf("loadCAPool = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte("device_config = \"d\"\nmetadata_url = \"https://h/m\"\ntargets_url = \"https://h/t\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "/etc/airlock")
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		if c.Server == "" && (c.MetadataURL == "" || c.TargetsURL == "") {
			t.Fatal("accepted a config with nowhere to update from")
		}
	})
}

func FuzzDecodeCheckin(f *testing.F) {
	f.Add([]byte(`{"poll_interval_seconds":60,"repository":{"metadata_url":"/repo/metadata","targets_url":"/repo/targets"},"server_time":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"poll_interval_seconds":0,"repository":{"metadata_url":"","targets_url":""},"server_time":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp deviceapi.CheckinResponse
		if err := DecodeResponse(data, &resp); err != nil {
			if !errors.Is(err, ErrResponse) {
				t.Fatalf("error %v does not wrap ErrResponse", err)
			}
			return
		}
		iv, err := pollInterval(resp.PollIntervalSeconds)
		if err == nil && iv != 0 && (iv < MinPollInterval || iv > MaxPollInterval) {
			t.Fatalf("accepted poll interval %v", iv)
		}
		base, _ := url.Parse("https://updates.example.com:8443/")
		a := &apiClient{base: base}
		meta, tgts, err := a.repositoryURLs(resp.Repository)
		if err != nil {
			return
		}
		for _, u := range []string{meta, tgts} {
			if u == "" {
				continue
			}
			if _, err := checkHTTPSURL(u); err != nil {
				t.Fatalf("accepted repository URL %q: %v", u, err)
			}
		}
	})
}

func TestDecodeResponseIsStrict(t *testing.T) {
	for _, in := range []string{
		`{"poll_interval_seconds":60,"device_id":"x"}`,
		`{"poll_interval_seconds":60} {}`,
		`{"poll_interval_seconds":"60"}`,
		`[]`,
		``,
	} {
		var resp deviceapi.CheckinResponse
		if err := DecodeResponse([]byte(in), &resp); !errors.Is(err, ErrResponse) {
			t.Errorf("DecodeResponse(%q) = %v, want ErrResponse", in, err)
		}
	}
	if _, err := pollInterval(1 << 40); !errors.Is(err, ErrResponse) {
		t.Errorf("absurd poll interval accepted: %v", err)
	}
}
