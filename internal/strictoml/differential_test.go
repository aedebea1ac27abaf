package strictoml

// Differential tests against github.com/BurntSushi/toml, the parser
// strictoml replaced in the device build; it stays a test-only dependency.

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// airlockConfig is the union of the wire types of device.toml
// (device/config.go wireConfig) and agent.toml (agent/config.go
// wireConfig); their key names do not overlap. A copy (this package cannot
// import them): device's and agent's TestWireKeysInStrictomlDifferential
// fail when a key is added there and not here.
type airlockConfig struct {
	// device.toml
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
	// agent.toml
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

// seeds are the configs in docs/*.md and the tests' configs.
func seeds(tb testing.TB) [][]byte {
	tb.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) == 0 {
		tb.Fatalf("no docs: %v", err)
	}
	var out [][]byte
	block := regexp.MustCompile("(?s)```toml\n(.*?)```")
	for _, p := range docs {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range block.FindAllSubmatch(data, -1) {
			out = append(out, m[1])
		}
	}
	if len(out) < 3 {
		tb.Fatalf("found %d TOML blocks in docs/*.md, want at least 3", len(out))
	}
	for _, s := range []string{
		// agent/config_test.go validConfig
		"device_config = \"device.toml\"\nserver = \"https://updates.example.com:8443\"\nserver_ca = \"server-ca.pem\"\nserver_ca_sha256 = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\nenrollment_token_file = \"enroll.token\"\nidentity_dir = \"/var/lib/airlock/identity\"\npoll_interval = \"30m\"\nmax_backoff = \"2h\"\ndownload_timeout = \"1h\"\nstall_timeout = \"45s\"\nmin_throughput = 2048\nreboot_command = [\"systemctl\", \"reboot\"]\nprogress = \"log\"\ndirector_root = \"director-root.json\"\n",
		"device_config = \"d.toml\"\nbogus = 1\n",
		// device.Config.Marshal output
		"# Airlock device config (docs/device.md)\nmodel = \"x1\"\nhw_rev = 3\nproduct = \"acme/router-x1\"\nroot = \"factory-root.json\"\nstate_dir = \"state\"\nwrite_chunk = 65536\n\n[slots]\n  a = \"slot-a.img\"\n  b = \"slot-b.img\"\n  size = 1048576\n\n[boot]\n  backend = \"sim\"\n  path = \"bootstate\"\n  offset = 0\n  redund_offset = 0\n  env_size = 0\n  boot_limit = 0\n\n[health]\n  command = [\"true\"]\n  timeout = \"10s\"\n\n[components]\n  \"acme/modem-m2\" = \"1.4.0-rc.1\"\n  bootloader = \"2.1.0\"\n",
		"model=\"x1\"\nhw_rev=4294967296\nproduct=\"acme/router-x1\"\nroot=\"r\"\nstate_dir=\"s\"\n[slots]\na=\"a\"\nb=\"b\"\nsize=1\n[boot]\nbackend=\"sim\"\npath=\"p\"\n",
		"[components]\nbootloader = \"1.0.0\"\nbootloader = \"2.0.0\"\n",
		"[components.bootloader]\nversion = \"1.0.0\"\n",
		"name = \"\\u00e9\\U0001F600\" # c\r\nsize = -0x10\ncommand = [\n 'a', # x\n \"b\",\n]\n",
		"name = 1979-05-27\nsize = 1.5\nflag = true\n",
	} {
		out = append(out, []byte(s))
	}
	return out
}

// checkSameAsBurntSushi decodes data into a fresh T with Decode and, when
// Decode accepts it, with BurntSushi/toml, and fails if they differ.
func checkSameAsBurntSushi[T any](t *testing.T, data []byte) {
	var ours, theirs T
	if err := Decode(data, 1<<16, "MaxSize", &ours); err != nil {
		return
	}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&theirs)
	if err != nil {
		t.Fatalf("strictoml accepts, BurntSushi refuses: %v\n%q", err, data)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("strictoml accepts keys BurntSushi leaves undecoded: %v\n%q", und, data)
	}
	if diff := cmp.Diff(theirs, ours); diff != "" {
		t.Fatalf("decoded values differ (-BurntSushi +strictoml):\n%s\n%q", diff, data)
	}
}

func TestSeedsMatchBurntSushi(t *testing.T) {
	accepted := 0
	for _, s := range seeds(t) {
		checkSameAsBurntSushi[airlockConfig](t, s)
		checkSameAsBurntSushi[testConfig](t, s)
		var c airlockConfig
		if Decode(s, 1<<16, "MaxSize", &c) == nil {
			accepted++
		}
	}
	if accepted < 5 {
		t.Errorf("only %d seeds decode as Airlock configs", accepted)
	}
}

func FuzzDecodeMatchesBurntSushi(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSameAsBurntSushi[airlockConfig](t, data)
		checkSameAsBurntSushi[testConfig](t, data)
	})
}

// genString returns a random string mixing bare-key characters, TOML
// syntax, escapes, control characters and non-ASCII runes.
func genString(r *rand.Rand) string {
	const alphabet = "ab-_9 Z.=#[]{}\"'\\\t\n\r\b\f\x00\x01\x1f\x7féü😀\u2028\ufeff"
	runes := []rune(alphabet)
	n := r.IntN(8)
	if r.IntN(4) == 0 {
		n = 0
	}
	var b strings.Builder
	for range n {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	return b.String()
}

func genInt(r *rand.Rand) int64 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return []int64{math.MinInt64, math.MaxInt64, -1, 1 << 32}[r.IntN(4)]
	case 2:
		return r.Int64N(1000) - 500
	}
	return int64(r.Uint64())
}

func genStrings(r *rand.Rand) []string {
	if r.IntN(3) == 0 {
		return nil
	}
	s := make([]string, r.IntN(4))
	for i := range s {
		s[i] = genString(r)
	}
	return s
}

func genConfig(r *rand.Rand) airlockConfig {
	s := genString
	c := airlockConfig{
		Model: s(r), Product: s(r), Channel: s(r), Root: s(r), StateDir: s(r), WriteChunk: genInt(r), Freshness: s(r),
		Slots: wireSlots{A: s(r), B: s(r), Recovery: s(r), Size: genInt(r)},
		Boot: wireBoot{Backend: s(r), Path: s(r), RedundPath: s(r), Offset: genInt(r), RedundOffset: genInt(r),
			EnvSize: genInt(r), BootLimit: int(genInt(r))},
		DeviceConfig: s(r), Server: s(r), ServerCA: s(r), ServerCASHA256: s(r), EnrollmentTokenFile: s(r),
		IdentityDir: s(r), MetadataURL: s(r), TargetsURL: s(r), DirectorRoot: s(r), PollInterval: s(r),
		MaxBackoff: s(r), DownloadTimeout: s(r), StallTimeout: s(r), MinThroughput: genInt(r),
		RebootCommand: genStrings(r), Progress: s(r),
	}
	if r.IntN(3) > 0 {
		n := genInt(r)
		c.HWRev = &n
	}
	if r.IntN(3) > 0 {
		c.Health = &wireHealth{Command: genStrings(r), Timeout: s(r)}
	}
	if r.IntN(3) > 0 {
		c.Components = map[string]string{}
		for range r.IntN(5) {
			c.Components[s(r)] = s(r)
		}
	}
	return c
}

// TestRoundTripMatchesBurntSushi encodes generated configs with Encode and
// with BurntSushi's encoder, requires the same bytes, and decodes them
// with both decoders back to the value encoded.
func TestRoundTripMatchesBurntSushi(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		c := genConfig(r)
		var ours, theirs bytes.Buffer
		if err := Encode(&ours, &c); err != nil {
			t.Fatalf("%d: Encode: %v", i, err)
		}
		if err := toml.NewEncoder(&theirs).Encode(c); err != nil {
			t.Fatalf("%d: BurntSushi Encode: %v", i, err)
		}
		if diff := cmp.Diff(theirs.String(), ours.String()); diff != "" {
			t.Fatalf("%d: encodings differ (-BurntSushi +strictoml):\n%s", i, diff)
		}
		var back, backTheirs airlockConfig
		if err := Decode(ours.Bytes(), 1<<20, "MaxSize", &back); err != nil {
			t.Fatalf("%d: Decode: %v\n%s", i, err, ours.Bytes())
		}
		if _, err := toml.Decode(ours.String(), &backTheirs); err != nil {
			t.Fatalf("%d: BurntSushi Decode: %v\n%s", i, err, ours.Bytes())
		}
		if diff := cmp.Diff(backTheirs, back); diff != "" {
			t.Fatalf("%d: decoders differ (-BurntSushi +strictoml):\n%s", i, diff)
		}
		if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%d: round trip (-encoded +decoded):\n%s\n%s", i, diff, ours.Bytes())
		}
	}
}
