package vendorcmd

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

// imagePair writes an image and its next build (a few patched blocks, a
// grown tail) and returns their paths.
func imagePair(t *testing.T, n int) (old, new string) {
	t.Helper()
	rng := rand.New(rand.NewSource(int64(n)))
	a := make([]byte, n)
	for off := 0; off < n; off += 4096 {
		if rng.Intn(3) != 0 {
			rng.Read(a[off:min(off+4096, n)])
		}
	}
	b := append(bytes.Clone(a), make([]byte, 8192)...)
	rng.Read(b[n:])
	for i := 0; i < 20; i++ {
		off := rng.Intn(n - 16)
		rng.Read(b[off : off+16])
	}
	dir := t.TempDir()
	old, new = filepath.Join(dir, "1.0.0.img"), filepath.Join(dir, "1.1.0.img")
	if err := os.WriteFile(old, a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(new, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return old, new
}

// TestDeltaCLI: release add --delta-from, release list and show, delta
// create on an existing release with a 2-of-2 product (staged until the
// second key signs), delta stats on files and on releases, and bundle
// create --delta-from, which refuses a delta that is not signed.
func TestDeltaCLI(t *testing.T) {
	k := t.TempDir()
	dir := filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root", "targets", "snap", "ts", "alice", "bob")
	kp := func(n string) string { return filepath.Join(k, n+".pem") }
	mustCLI(t, "repo", "init", "--dir", dir, "--root-key", kp("root"), "--targets-key", kp("targets"),
		"--online-snapshot-key", kp("snap"), "--online-timestamp-key", kp("ts"))
	mustCLI(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", kp("alice")+".pub",
		"--key", kp("bob")+".pub", "--threshold", "2", "--targets-key", kp("targets"))
	old, new := imagePair(t, 600<<10)
	add := func(v, img string, extra ...string) string {
		args := append([]string{"release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", v,
			"--model", "x1", "--security-version", "1", "--compress", "zstd", "--key", kp("alice"), "--key", kp("bob")}, extra...)
		return mustCLIAll(t, args...)
	}
	add("1.0.0", old)
	mustCLI(t, "repo", "publish", "--dir", dir)
	text := add("1.1.0", new, "--delta-from", "1.0.0")
	if !strings.Contains(text, "delta 1.0.0 -> 1.1.0: ") {
		t.Errorf("release add --delta-from printed\n%s\nwithout the delta", text)
	}
	add("1.2.0", old) // no delta yet: one is added below
	mustCLI(t, "repo", "publish", "--dir", dir)

	var list []struct {
		Version string `json:"version"`
		Deltas  []struct {
			From   string `json:"from"`
			Length int64  `json:"length"`
		} `json:"deltas"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "release", "list", "--dir", dir, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || len(list[1].Deltas) != 1 || list[1].Deltas[0].From != "1.0.0" || list[1].Deltas[0].Length <= 0 || len(list[2].Deltas) != 0 {
		t.Fatalf("release list --json: %+v", list)
	}
	if out := mustCLI(t, "release", "list", "--dir", dir); !strings.Contains(out, "1.0.0:") {
		t.Errorf("release list does not show the delta:\n%s", out)
	}
	if out := mustCLI(t, "release", "show", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0"); !strings.Contains(out, "delta from 1.0.0") {
		t.Errorf("release show does not show the delta:\n%s", out)
	}

	// A delta bundle of a delta never signed is refused with a hint.
	out := filepath.Join(t.TempDir(), "delta.airlock")
	code, _, errOut := runCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.2.0", "--delta-from", "1.1.0", "--out", out)
	if code != cli.ExitFailure || !strings.Contains(errOut, "airlock delta create") {
		t.Fatalf("bundle create --delta-from without a delta: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused bundle was written")
	}

	// delta create: one key of two stages it; the second signs; publish.
	text = mustCLIAll(t, "delta", "create", "--dir", dir, "--product", "acme/router-x1", "--from", "1.1.0", "--to", "1.2.0", "--key", kp("alice"))
	if !strings.Contains(text, "signatures 1/2") || !strings.Contains(text, "release sign") {
		t.Errorf("delta create printed\n%s", text)
	}
	if show := mustCLI(t, "release", "show", "--dir", dir, "--product", "acme/router-x1"); !strings.Contains(show, "adds deltas from 1.1.0") || strings.Contains(show, "WARNING") {
		t.Errorf("the pending delta is shown as\n%s", show)
	}
	if code, _, errOut := runCLI(t, "repo", "publish", "--dir", dir); code != cli.ExitFailure {
		t.Fatalf("publish below threshold: exit %d\n%s", code, errOut)
	}
	mustCLI(t, "release", "sign", "--dir", dir, "--product", "acme/router-x1", "--version", "1.2.0", "--key", kp("bob"))
	mustCLI(t, "repo", "publish", "--dir", dir)
	code, _, errOut = runCLI(t, "delta", "create", "--dir", dir, "--product", "acme/router-x1", "--from", "1.1.0", "--to", "1.2.0", "--key", kp("alice"))
	if code != cli.ExitFailure || !strings.Contains(errOut, "already signs a delta from 1.1.0") {
		t.Fatalf("delta create twice: exit %d\n%s", code, errOut)
	}

	var bi repo.BundleInfo
	js := mustCLI(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.2.0", "--delta-from", "1.1.0", "--out", out, "--json")
	if err := json.Unmarshal([]byte(js), &bi); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := bundle.Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.DeltaFrom != "1.1.0" || m.PayloadLength != bi.PayloadLength || bi.DeltaFrom != "1.1.0" || bi.PayloadLength >= bi.FullPayloadLength {
		t.Fatalf("delta bundle %+v, info %+v", m, bi)
	}
	text = mustCLIAll(t, "bundle", "create", "--dir", dir, "--product", "acme/router-x1", "--version", "1.1.0", "--delta-from", "1.0.0", "--out", out+"2")
	if !strings.Contains(text, "delta bundle for devices running 1.0.0") {
		t.Errorf("bundle create --delta-from printed\n%s", text)
	}

	// delta stats: two files, then two releases.
	stats := mustCLI(t, "delta", "stats", "--from", old, "--to", new)
	for _, want := range []string{"copied blocks", "blocks reused", "delta bytes", "of the 622592-byte new image"} {
		if !strings.Contains(stats, want) {
			t.Errorf("delta stats printed\n%s\nwithout %q", stats, want)
		}
	}
	var sj struct {
		Tree *struct{} `json:"tree"`
		Data struct {
			NewBlocks    int64 `json:"new_blocks"`
			CopiedBlocks int64 `json:"copied_blocks"`
		} `json:"data"`
		DeltaBytes    int64 `json:"delta_bytes"`
		PayloadLength int64 `json:"payload_length"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "delta", "stats", "--dir", dir, "--product", "acme/router-x1", "--from", "1.0.0", "--to", "1.1.0", "--json")), &sj); err != nil {
		t.Fatal(err)
	}
	if sj.Tree == nil || sj.Data.NewBlocks != 152 || sj.Data.CopiedBlocks < 60 || sj.PayloadLength == 0 || sj.DeltaBytes != list[1].Deltas[0].Length {
		t.Errorf("delta stats --dir --json: %+v; want the signed delta's %d bytes", sj, list[1].Deltas[0].Length)
	}
	t.Logf("1.0.0 -> 1.1.0: delta %d bytes, whole payload %d bytes; 1.1.0 -> 1.2.0 bundle payload %d of %d",
		sj.DeltaBytes, sj.PayloadLength, bi.PayloadLength, bi.FullPayloadLength)
	if code, _, _ := runCLI(t, "delta", "stats", "--from", old, "--to", new, "--product", "acme/router-x1"); code != cli.ExitUsage {
		t.Errorf("delta stats --product without --dir: exit %d, want usage", code)
	}
}
