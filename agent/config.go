package agent

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/strictoml"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust"
)

// Config limits and defaults.
const (
	// DefaultConfigPath is where a real device keeps the agent config.
	DefaultConfigPath = "/etc/airlock/agent.toml"
	// MaxConfigSize bounds the agent config file.
	MaxConfigSize = 64 << 10
	// MaxCAFileSize bounds the server_ca PEM file.
	MaxCAFileSize = 1 << 20
	// MaxTokenSize bounds the enrollment token file.
	MaxTokenSize = 4 << 10
	// MaxURLLength bounds every URL (configured or sent by the server).
	MaxURLLength = 2048
	// MaxRebootArgs bounds the words of reboot_command.
	MaxRebootArgs = 64

	// DefaultPollInterval is poll_interval when unset; the server's value
	// wins once it sent one.
	DefaultPollInterval = time.Hour
	// MinPollInterval and MaxPollInterval bound poll_interval and the
	// interval the server asks for.
	MinPollInterval = deviceapi.MinPollInterval
	MaxPollInterval = deviceapi.MaxPollInterval
	// DefaultMaxBackoff is max_backoff when unset: the cap of the
	// exponential backoff after failed polls.
	DefaultMaxBackoff = 6 * time.Hour
	// DefaultDownloadTimeout is download_timeout when unset: the deadline
	// of one whole install attempt (metadata, payload, slot write).
	DefaultDownloadTimeout = 2 * time.Hour
	// DefaultStallTimeout is stall_timeout when unset: the window of the
	// minimum-throughput rule. A response (metadata or payload) without a
	// single byte, or with fewer than min_throughput × stall_timeout
	// bytes, for this long is cut; a payload is resumed (then failed).
	DefaultStallTimeout = 60 * time.Second
	// DefaultMinThroughput is min_throughput when unset, in bytes per
	// second (trust.DefaultMinThroughput).
	DefaultMinThroughput = trust.DefaultMinThroughput
	// MaxMinThroughput bounds min_throughput (bytes per second); the
	// smallest value, 1, leaves only the stall rule in effect.
	MaxMinThroughput = 1 << 30
	// MinTimeout and MaxTimeout bound download_timeout and stall_timeout.
	MinTimeout = 10 * time.Millisecond
	MaxTimeout = 7 * 24 * time.Hour
)

// Progress modes (the progress key).
const (
	ProgressAuto = "auto" // a bar on a terminal, log lines otherwise
	ProgressBar  = "bar"
	ProgressLog  = "log"
	ProgressNone = "none"
)

// ErrConfig is wrapped by every config error.
var ErrConfig = errors.New("invalid agent config")

// Config is the agent config (agent.toml). Relative paths are relative to
// Dir, the directory of the config file; use Path to resolve them.
type Config struct {
	// Dir is the directory of the config file (not part of the file).
	Dir string

	// DeviceConfig is the device config (device.toml) the agent operates.
	DeviceConfig string
	// Server is the https:// URL of the update server's device API; ""
	// means repository-only mode (no enrollment, check-in or reports:
	// MetadataURL and TargetsURL are required).
	Server string
	// ServerCA is a PEM file of the CA certificates trusted for the server
	// and the repository; "" means the system roots.
	ServerCA string
	// ServerCASHA256 optionally pins the server CA: hex SHA-256 of the DER
	// certificate. ServerCA must contain it and every verified server
	// chain must end in it.
	ServerCASHA256 string
	// EnrollmentTokenFile holds the one-time enrollment token.
	EnrollmentTokenFile string
	// IdentityDir holds the device key (0600) and issued certificate.
	IdentityDir string
	// MetadataURL and TargetsURL locate the TUF repository; when set they
	// override the URLs the server returns at check-in.
	MetadataURL, TargetsURL string

	PollInterval    time.Duration // default DefaultPollInterval
	MaxBackoff      time.Duration // default DefaultMaxBackoff
	DownloadTimeout time.Duration // default DefaultDownloadTimeout
	StallTimeout    time.Duration // default DefaultStallTimeout
	// MinThroughput is the minimum rate, in bytes per second averaged
	// over StallTimeout, of every response: metadata and payload
	// (default DefaultMinThroughput).
	MinThroughput int64

	// DirectorRoot is the director repository's root metadata file (the
	// output of `airlock server director-root`); setting it enables
	// director mode: the device installs only what the server's director
	// assigns to it AND the image repository authorizes with the same
	// length and hashes (docs/rollouts.md). It needs Server.
	DirectorRoot string

	// RebootCommand is run (no shell) after an install; empty means a
	// simulated reboot: the agent plays the boot stage in-process
	// (device.Boot), then runs the health check.
	RebootCommand []string
	// Progress is one of the Progress* modes; default ProgressAuto.
	Progress string
	// FullDownload always downloads a release's whole payload. By default
	// a device running a schema 2 release fetches only the blocks it does
	// not hold (range requests; a delta update with no delta artefact) and
	// falls back to the whole payload when it cannot.
	FullDownload bool
}

type wireConfig struct {
	DeviceConfig        string   `toml:"device_config"`
	Server              string   `toml:"server"`
	ServerCA            string   `toml:"server_ca"`
	ServerCASHA256      string   `toml:"server_ca_sha256"`
	EnrollmentTokenFile string   `toml:"enrollment_token_file"`
	IdentityDir         string   `toml:"identity_dir"`
	MetadataURL         string   `toml:"metadata_url"`
	TargetsURL          string   `toml:"targets_url"`
	DirectorRoot        string   `toml:"director_root"`
	PollInterval        string   `toml:"poll_interval"`
	MaxBackoff          string   `toml:"max_backoff"`
	DownloadTimeout     string   `toml:"download_timeout"`
	StallTimeout        string   `toml:"stall_timeout"`
	MinThroughput       int64    `toml:"min_throughput"`
	RebootCommand       []string `toml:"reboot_command"`
	Progress            string   `toml:"progress"`
	FullDownload        bool     `toml:"full_download,omitempty"`
}

// LoadConfig reads and parses the agent config at path.
func LoadConfig(path string) (*Config, error) {
	data, err := durable.ReadFile(durable.OS, path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read agent config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses an agent config strictly: at most MaxConfigSize bytes,
// valid TOML, no key the schema does not define, every value in range. dir
// is the directory relative paths are resolved against. It does not read
// the files the config names.
func ParseConfig(data []byte, dir string) (*Config, error) {
	var w wireConfig
	if err := strictoml.Decode(data, MaxConfigSize, "MaxConfigSize", &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c := &Config{
		Dir: dir, DeviceConfig: w.DeviceConfig, Server: w.Server, ServerCA: w.ServerCA,
		ServerCASHA256: w.ServerCASHA256, EnrollmentTokenFile: w.EnrollmentTokenFile,
		IdentityDir: w.IdentityDir, MetadataURL: w.MetadataURL, TargetsURL: w.TargetsURL,
		DirectorRoot: w.DirectorRoot, RebootCommand: w.RebootCommand, Progress: w.Progress,
		MinThroughput: w.MinThroughput, FullDownload: w.FullDownload,
	}
	for _, d := range []struct {
		key string
		v   string
		dst *time.Duration
	}{
		{"poll_interval", w.PollInterval, &c.PollInterval},
		{"max_backoff", w.MaxBackoff, &c.MaxBackoff},
		{"download_timeout", w.DownloadTimeout, &c.DownloadTimeout},
		{"stall_timeout", w.StallTimeout, &c.StallTimeout},
	} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrConfig, d.key, err)
		}
		*d.dst = v
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate fills defaults and checks every field.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.DownloadTimeout == 0 {
		c.DownloadTimeout = DefaultDownloadTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.MinThroughput == 0 {
		c.MinThroughput = DefaultMinThroughput
	}
	if c.Progress == "" {
		c.Progress = ProgressAuto
	}
	if c.DeviceConfig == "" {
		return bad("device_config is required")
	}
	for _, u := range []struct{ key, v string }{{"server", c.Server}, {"metadata_url", c.MetadataURL}, {"targets_url", c.TargetsURL}} {
		if u.v == "" {
			continue
		}
		if _, err := checkHTTPSURL(u.v); err != nil {
			return bad("%s: %v", u.key, err)
		}
	}
	if c.Server == "" {
		if c.MetadataURL == "" || c.TargetsURL == "" {
			return bad("without server (repository-only mode) metadata_url and targets_url are required")
		}
		if c.EnrollmentTokenFile != "" || c.IdentityDir != "" || c.DirectorRoot != "" {
			return bad("enrollment_token_file, identity_dir and director_root need a server")
		}
	} else if c.IdentityDir == "" {
		return bad("identity_dir is required with a server")
	}
	if c.ServerCASHA256 != "" {
		if b, err := hex.DecodeString(c.ServerCASHA256); err != nil || len(b) != sha256.Size || strings.ToLower(c.ServerCASHA256) != c.ServerCASHA256 {
			return bad("server_ca_sha256 must be 64 lowercase hex digits")
		}
		if c.ServerCA == "" {
			return bad("server_ca_sha256 needs server_ca")
		}
	}
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"poll_interval", c.PollInterval, MinPollInterval, MaxPollInterval},
		{"max_backoff", c.MaxBackoff, MinPollInterval, MaxPollInterval},
		{"download_timeout", c.DownloadTimeout, MinTimeout, MaxTimeout},
		{"stall_timeout", c.StallTimeout, MinTimeout, MaxTimeout},
	} {
		if d.v < d.min || d.v > d.max {
			return bad("%s %v out of range [%v, %v]", d.key, d.v, d.min, d.max)
		}
	}
	if c.MinThroughput < 1 || c.MinThroughput > MaxMinThroughput {
		return bad("min_throughput %d bytes/s out of range [1, %d]", c.MinThroughput, MaxMinThroughput)
	}
	if len(c.RebootCommand) > MaxRebootArgs {
		return bad("reboot_command has more than %d words", MaxRebootArgs)
	}
	if len(c.RebootCommand) > 0 && c.RebootCommand[0] == "" {
		return bad("reboot_command[0] is empty")
	}
	switch c.Progress {
	case ProgressAuto, ProgressBar, ProgressLog, ProgressNone:
	default:
		return bad("progress %q is not one of auto, bar, log, none", c.Progress)
	}
	return nil
}

// Path resolves a path of the config: relative paths are relative to Dir.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// checkHTTPSURL accepts only absolute https URLs without user info,
// query or fragment, within MaxURLLength.
func checkHTTPSURL(s string) (*url.URL, error) {
	if len(s) > MaxURLLength {
		return nil, fmt.Errorf("URL is longer than %d bytes", MaxURLLength)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q: %v", s, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("URL %q is not https", s)
	case u.Host == "":
		return nil, fmt.Errorf("URL %q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("URL %q carries credentials", s)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("URL %q has a query or fragment", s)
	}
	return u, nil
}

// loadCAPool reads the server_ca file (all CERTIFICATE blocks, nothing
// else) and checks the pin: with a pin, the pool holds only the pinned CA.
func loadCAPool(fsys durable.FS, path, pin string) (*x509.CertPool, error) {
	data, err := durable.ReadFile(fsys, path, MaxCAFileSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read server_ca: %w", err)
	}
	pool := x509.NewCertPool()
	n, pinned := 0, false
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, fmt.Errorf("%w: server_ca %s: trailing data that is not PEM", ErrConfig, path)
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: server_ca %s: unexpected PEM block %q", ErrConfig, path, b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: server_ca %s: %v", ErrConfig, path, err)
		}
		n++
		if pin != "" {
			sum := sha256.Sum256(cert.Raw)
			if hex.EncodeToString(sum[:]) != pin {
				continue // only the pinned CA is trusted
			}
			pinned = true
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: server_ca %s holds no certificate", ErrConfig, path)
	}
	if pin != "" && !pinned {
		return nil, fmt.Errorf("%w: server_ca %s does not contain the CA pinned by server_ca_sha256 (wrong file, or someone replaced it)", ErrConfig, path)
	}
	return pool, nil
}

// readToken reads the enrollment token (trimmed, printable ASCII).
func readToken(fsys durable.FS, path string) (string, error) {
	data, err := durable.ReadFile(fsys, path, MaxTokenSize)
	if err != nil {
		return "", fmt.Errorf("failed to read enrollment token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("enrollment token file %s is empty", path)
	}
	for _, r := range tok {
		if r < 0x21 || r > 0x7e {
			return "", fmt.Errorf("enrollment token file %s holds characters that are not printable ASCII", path)
		}
	}
	return tok, nil
}

// openDevice opens the device the config names.
func (c *Config) openDevice(fsys durable.FS, opts device.Options) (*device.Device, error) {
	return device.OpenConfig(fsys, c.Path(c.DeviceConfig), opts)
}
