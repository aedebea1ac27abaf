package device

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/strictoml"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
)

// Config limits and defaults.
const (
	// ConfigFileName is the config file name inside a device directory
	// (--dir DIR means DIR/device.toml).
	ConfigFileName = "device.toml"
	// DefaultConfigPath is where a real device keeps its config.
	DefaultConfigPath = "/etc/airlock/device.toml"
	// MaxConfigSize bounds the config file.
	MaxConfigSize = 64 << 10
	// DefaultWriteChunk is the default slot write size (write_chunk).
	DefaultWriteChunk = 1 << 20
	// MinWriteChunk and MaxWriteChunk bound write_chunk; it is the buffer
	// the install pipeline holds, so it bounds memory.
	MinWriteChunk = 512
	MaxWriteChunk = 16 << 20
	// DefaultHealthTimeout is the health check deadline when none is set.
	DefaultHealthTimeout = 60 * time.Second
	// MaxHealthTimeout bounds the health check deadline.
	MaxHealthTimeout = 24 * time.Hour
	// MaxHealthArgs bounds the number of words of the health command.
	MaxHealthArgs = 64
	// MaxSlotSize bounds a slot (1 TiB).
	MaxSlotSize = 1 << 40
	// MaxComponents bounds the [components] table.
	MaxComponents = 64
	// MaxBootLimit bounds boot.boot_limit, the trial boot attempts before
	// the bootloader falls back (default boot.DefaultBootLimit).
	MaxBootLimit = 255
	// MaxGrubBootLimit is the largest boot.boot_limit the shipped grub.cfg
	// (docs/examples/grub) counts to with the grubenv backend; `device
	// init` enforces it. A larger limit in device.toml is not refused here
	// (the device binary stays small): such a grub.cfg falls back after 5
	// attempts.
	MaxGrubBootLimit = 5
)

// ErrConfig is wrapped by every config error.
var ErrConfig = errors.New("invalid device config")

// The values of Config.BundleFreshness.
const (
	FreshnessRelease   = "release"
	FreshnessTimestamp = "timestamp"
)

// Config describes a device. Paths are stored as written (relative paths are
// relative to Dir, the directory of the config file); use Path to resolve
// them.
type Config struct {
	// Dir is the directory of the config file (not part of the file).
	Dir string

	Model      string // device model, compared with the release's models
	HWRev      uint32 // hardware revision, compared with the release's range
	Product    string // product ID, e.g. "acme/router-x1"
	Channel    string // release channel; default release.DefaultChannel
	Root       string // factory root metadata (read-only trust anchor)
	StateDir   string // TUF state, slot records, counter
	WriteChunk int64  // slot write size in bytes; default DefaultWriteChunk
	// BundleFreshness is how fresh an offline bundle's metadata must be:
	// FreshnessRelease ("", the default: until its root, targets or
	// release role expires) or FreshnessTimestamp (its timestamp too, as
	// online). See docs/bundle-format.md, "Freshness".
	BundleFreshness string

	Slots  SlotsConfig
	Boot   BootConfig
	Health HealthConfig

	// Components are the installed versions of the device's other
	// components (bootloader, modem firmware, another product), which a
	// release's depends entries are checked against. Names are those a
	// release's depends may use (a product ID or a simple name); at most
	// MaxComponents; nil if none.
	Components map[string]release.Version
}

// SlotsConfig locates the slots: files or block devices.
type SlotsConfig struct {
	A, B     string
	Recovery string // optional recovery slot, "" if none
	Size     int64  // usable bytes of each slot (A and B)
}

// BootConfig selects the boot-control backend (see package boot).
type BootConfig struct {
	Backend      string // "sim", "uboot-env" or "grubenv"
	Path         string
	RedundPath   string
	Offset       int64
	RedundOffset int64
	EnvSize      int64
	BootLimit    int // trial boot attempts; default boot.DefaultBootLimit
	// Verify is what boot checks of a schema 2 slot: VerifyFull (every
	// block against the signed tree, the default) or VerifyTree (only the
	// tree against the signed root: for devices that open the slot through
	// the kernel's dm-verity, which checks each block as it is read).
	Verify string
}

// Values of BootConfig.Verify (boot.verify in device.toml).
const (
	VerifyFull = "full"
	VerifyTree = "tree"
)

// HealthConfig is the post-boot health check: a command (no shell) that
// must exit 0 within Timeout.
type HealthConfig struct {
	Command []string
	Timeout time.Duration
}

type wireConfig struct {
	Model      string            `toml:"model"`
	HWRev      *int64            `toml:"hw_rev"`
	Product    string            `toml:"product"`
	Channel    string            `toml:"channel,omitempty"`
	Root       string            `toml:"root"`
	StateDir   string            `toml:"state_dir"`
	WriteChunk int64             `toml:"write_chunk,omitempty"`
	Freshness  string            `toml:"bundle_freshness,omitempty"`
	Slots      wireSlots         `toml:"slots"`
	Boot       wireBoot          `toml:"boot"`
	Health     *wireHealth       `toml:"health,omitempty"`
	Components map[string]string `toml:"components,omitempty"`
}

type wireSlots struct {
	A        string `toml:"a"`
	B        string `toml:"b"`
	Recovery string `toml:"recovery,omitempty"`
	Size     int64  `toml:"size"`
}

type wireBoot struct {
	Backend      string `toml:"backend"`
	Path         string `toml:"path"`
	RedundPath   string `toml:"redund_path,omitempty"`
	Offset       int64  `toml:"offset,omitempty"`
	RedundOffset int64  `toml:"redund_offset,omitempty"`
	EnvSize      int64  `toml:"env_size,omitempty"`
	BootLimit    int    `toml:"boot_limit,omitempty"`
	Verify       string `toml:"verify,omitempty"`
}

type wireHealth struct {
	Command []string `toml:"command"`
	Timeout string   `toml:"timeout,omitempty"`
}

// LoadConfig reads and parses the config file at path through fsys.
func LoadConfig(fsys durable.FS, path string) (*Config, error) {
	data, err := durable.ReadFile(fsys, path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read device config: %w", err)
	}
	c, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a config file strictly: at most MaxConfigSize bytes,
// valid TOML, no key the schema does not define, every value in range. dir
// is the directory relative paths are resolved against.
func ParseConfig(data []byte, dir string) (*Config, error) {
	var w wireConfig
	if err := strictoml.Decode(data, MaxConfigSize, "MaxConfigSize", &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c := &Config{
		Dir:             dir,
		Model:           w.Model,
		Product:         w.Product,
		Channel:         w.Channel,
		Root:            w.Root,
		StateDir:        w.StateDir,
		WriteChunk:      w.WriteChunk,
		BundleFreshness: w.Freshness,
		Slots:           SlotsConfig{A: w.Slots.A, B: w.Slots.B, Recovery: w.Slots.Recovery, Size: w.Slots.Size},
		Boot: BootConfig{Backend: w.Boot.Backend, Path: w.Boot.Path, RedundPath: w.Boot.RedundPath,
			Offset: w.Boot.Offset, RedundOffset: w.Boot.RedundOffset, EnvSize: w.Boot.EnvSize, BootLimit: w.Boot.BootLimit,
			Verify: w.Boot.Verify},
	}
	if w.HWRev == nil {
		return nil, fmt.Errorf("%w: hw_rev is required", ErrConfig)
	}
	if *w.HWRev < 0 || *w.HWRev > 1<<32-1 {
		return nil, fmt.Errorf("%w: hw_rev %d is not a uint32", ErrConfig, *w.HWRev)
	}
	c.HWRev = uint32(*w.HWRev)
	if len(w.Components) > MaxComponents {
		return nil, fmt.Errorf("%w: components has %d entries, the limit is MaxComponents %d", ErrConfig, len(w.Components), MaxComponents)
	}
	for name, ver := range w.Components {
		v, err := release.ParseVersion(ver)
		if err != nil {
			return nil, fmt.Errorf("%w: components.%q: %v", ErrConfig, name, err)
		}
		if c.Components == nil {
			c.Components = map[string]release.Version{}
		}
		c.Components[name] = v
	}
	if w.Health != nil {
		c.Health.Command = w.Health.Command
		if w.Health.Timeout != "" {
			d, err := time.ParseDuration(w.Health.Timeout)
			if err != nil {
				return nil, fmt.Errorf("%w: health.timeout: %v", ErrConfig, err)
			}
			c.Health.Timeout = d
		}
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
	if c.Channel == "" {
		c.Channel = release.DefaultChannel
	}
	if c.WriteChunk == 0 {
		c.WriteChunk = DefaultWriteChunk
	}
	if c.Boot.BootLimit == 0 {
		c.Boot.BootLimit = boot.DefaultBootLimit
	}
	if c.Health.Timeout == 0 {
		c.Health.Timeout = DefaultHealthTimeout
	}
	if c.Model == "" || len(c.Model) > release.MaxModelLength {
		return bad("model must be 1 to %d bytes", release.MaxModelLength)
	}
	if _, err := release.ParseProduct(c.Product); err != nil {
		return bad("product: %v", err)
	}
	if len(c.Channel) > release.MaxChannelLength {
		return bad("channel is longer than %d bytes", release.MaxChannelLength)
	}
	if f := c.BundleFreshness; f != "" && f != FreshnessRelease && f != FreshnessTimestamp {
		return bad("bundle_freshness must be %q or %q", FreshnessRelease, FreshnessTimestamp)
	}
	for _, p := range []struct{ name, v string }{
		{"root", c.Root}, {"state_dir", c.StateDir}, {"slots.a", c.Slots.A}, {"slots.b", c.Slots.B}, {"boot.path", c.Boot.Path},
	} {
		if p.v == "" {
			return bad("%s is required", p.name)
		}
	}
	paths := []string{c.Path(c.Slots.A), c.Path(c.Slots.B)}
	if c.Slots.Recovery != "" {
		paths = append(paths, c.Path(c.Slots.Recovery))
	}
	for i, p := range paths {
		if slices.Contains(paths[:i], p) {
			return bad("slots must be distinct, %q is used twice", p)
		}
	}
	if c.Slots.Size <= 0 || c.Slots.Size > MaxSlotSize {
		return bad("slots.size %d out of range [1, %d]", c.Slots.Size, int64(MaxSlotSize))
	}
	if c.WriteChunk < MinWriteChunk || c.WriteChunk > MaxWriteChunk {
		return bad("write_chunk %d out of range [%d, %d]", c.WriteChunk, MinWriteChunk, MaxWriteChunk)
	}
	if v := c.Boot.Verify; v != "" && v != VerifyFull && v != VerifyTree {
		return bad("boot.verify %q: want %q or %q", v, VerifyFull, VerifyTree)
	}
	if c.Boot.BootLimit < 1 || c.Boot.BootLimit > MaxBootLimit {
		return bad("boot.boot_limit %d out of range [1, 255]", c.Boot.BootLimit)
	}
	if len(c.Health.Command) > MaxHealthArgs {
		return bad("health.command has more than %d words", MaxHealthArgs)
	}
	if len(c.Health.Command) > 0 && c.Health.Command[0] == "" {
		return bad("health.command[0] is empty")
	}
	if c.Health.Timeout < time.Millisecond || c.Health.Timeout > MaxHealthTimeout {
		return bad("health.timeout %v out of range [1ms, %v]", c.Health.Timeout, MaxHealthTimeout)
	}
	if err := validateComponents(c.Components, c.Product); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if _, err := boot.Open(durable.OS, c.bootConfig()); err != nil {
		return bad("boot: %v", err)
	}
	return nil
}

// validateComponents checks a components table: at most MaxComponents,
// each name one a release's depends may use (release.ParseDependency
// decides, so the two can never disagree), each version set, and not the
// device's own product (its version is the installed release's).
func validateComponents(comps map[string]release.Version, product string) error {
	if len(comps) > MaxComponents {
		return fmt.Errorf("components has %d entries, the limit is MaxComponents %d", len(comps), MaxComponents)
	}
	for name, v := range comps {
		if v.IsZero() {
			return fmt.Errorf("components.%q has no version", name)
		}
		if _, err := release.ParseDependency(name + ">=" + v.String()); err != nil {
			return fmt.Errorf("components.%q: not a component name a release can depend on (a product ID or a name matching ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$)", name)
		}
		if name == product {
			return fmt.Errorf("components.%q is the device's own product: its version is the installed release's", name)
		}
	}
	return nil
}

// ParseComponent parses a NAME=VERSION component assignment (the form of
// `airlock device init --component`).
func ParseComponent(s string) (string, release.Version, error) {
	name, ver, ok := strings.Cut(s, "=")
	if !ok {
		return "", release.Version{}, fmt.Errorf("component %q: want NAME=VERSION", s)
	}
	v, err := release.ParseVersion(ver)
	if err != nil {
		return "", release.Version{}, fmt.Errorf("component %q: %w", name, err)
	}
	if err := validateComponents(map[string]release.Version{name: v}, ""); err != nil {
		return "", release.Version{}, err
	}
	return name, v, nil
}

// Path resolves a path of the config: relative paths are relative to Dir.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

func (c *Config) bootConfig() boot.Config {
	rp := c.Boot.RedundPath
	if rp != "" {
		rp = c.Path(rp)
	}
	return boot.Config{
		Backend: c.Boot.Backend, Path: c.Path(c.Boot.Path), RedundPath: rp,
		Offset: c.Boot.Offset, RedundOffset: c.Boot.RedundOffset, EnvSize: c.Boot.EnvSize,
	}
}

// Marshal encodes c as a config file (paths as written, defaults explicit).
func (c *Config) Marshal() ([]byte, error) {
	hw := int64(c.HWRev)
	w := wireConfig{
		Model: c.Model, HWRev: &hw, Product: c.Product, Channel: c.Channel, Root: c.Root,
		StateDir: c.StateDir, WriteChunk: c.WriteChunk, Freshness: c.BundleFreshness,
		Slots: wireSlots{A: c.Slots.A, B: c.Slots.B, Recovery: c.Slots.Recovery, Size: c.Slots.Size},
		Boot: wireBoot{Backend: c.Boot.Backend, Path: c.Boot.Path, RedundPath: c.Boot.RedundPath,
			Offset: c.Boot.Offset, RedundOffset: c.Boot.RedundOffset, EnvSize: c.Boot.EnvSize, BootLimit: c.Boot.BootLimit,
			Verify: c.Boot.Verify},
	}
	for name, v := range c.Components {
		if w.Components == nil {
			w.Components = map[string]string{}
		}
		w.Components[name] = v.String()
	}
	if len(c.Health.Command) > 0 || c.Health.Timeout != 0 {
		w.Health = &wireHealth{Command: c.Health.Command}
		if c.Health.Timeout != 0 {
			w.Health.Timeout = c.Health.Timeout.String()
		}
	}
	var b strings.Builder
	b.WriteString("# Airlock device config (docs/device.md)\n")
	if err := strictoml.Encode(&b, w); err != nil {
		return nil, fmt.Errorf("failed to encode device config: %w", err)
	}
	return []byte(b.String()), nil
}
