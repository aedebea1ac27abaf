package vendorcmd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
	"github.com/airlockfw/airlock/keys"
)

// The tests run the full command line, as cmd/airlock wires it.
func init() { devicecmd.Provenance = ShowProvenance }

// TestProvenanceCLI drives provenance end to end through the command line
// with real keys and files: a policy, an attested build, release add,
// publish, and verify --show-provenance from the repository directory and
// over HTTP; then a disallowed builder, a bad signature and a foreign
// image are refused at release add, naming the check.
func TestProvenanceCLI(t *testing.T) {
	k := t.TempDir()
	dir := filepath.Join(t.TempDir(), "repo")
	genKeys(t, k, "root", "targets", "snap", "ts", "alice", "bob", "ci", "rogue")
	kp := func(n string) string { return filepath.Join(k, n+".pem") }
	mustCLI(t, "repo", "init", "--dir", dir, "--root-key", kp("root"), "--targets-key", kp("targets"),
		"--online-snapshot-key", kp("snap"), "--online-timestamp-key", kp("ts"))
	mustCLI(t, "repo", "delegate", "--dir", dir, "--product", "acme/router-x1", "--key", kp("alice")+".pub", "--key", kp("bob")+".pub",
		"--threshold", "2", "--targets-key", kp("targets"))
	mustCLI(t, "repo", "publish", "--dir", dir)
	const builder, source, buildType = "https://ci.acme.example/builders/fw", "https://git.acme.example/fw", "https://ci.acme.example/buildtypes/make/v1"
	const commit = "89abcdef0123456789abcdef0123456789abcdef"
	mustCLI(t, "repo", "provenance-policy", "--dir", dir, "--product", "acme/router-x1", "--builder", builder,
		"--source", source, "--build-type", buildType, "--signer", kp("ci")+".pub")
	ciID, aliceID, bobID := pubID(t, kp("ci")), pubID(t, kp("alice")), pubID(t, kp("bob"))
	if out := mustCLI(t, "repo", "provenance-policy", "--dir", dir, "--product", "acme/router-x1"); !strings.Contains(out, "1 of "+ciID) || !strings.Contains(out, builder) {
		t.Fatalf("policy shown:\n%s", out)
	}

	img := filepath.Join(t.TempDir(), "firmware.img")
	os.WriteFile(img, bytes.Repeat([]byte("firmware"), 40_000), 0o644)
	attest := func(name, builderID, key, image string) string {
		out := filepath.Join(t.TempDir(), name)
		mustCLI(t, "provenance", "attest", "--image", image, "--builder", builderID, "--build-type", buildType,
			"--source", "git+"+source+"@refs/heads/main", "--commit", commit, "--invocation", "build-7", "--key", kp(key), "--out", out)
		return out
	}
	add := func(version, prov string) (int, string) {
		code, _, errOut := runCLI(t, "release", "add", "--dir", dir, "--product", "acme/router-x1", "--image", img, "--version", version,
			"--security-version", "1", "--model", "x1", "--compress", "zstd", "--key", kp("alice"), "--provenance", prov)
		return code, errOut
	}

	// Refused at release add, each naming its check.
	other := filepath.Join(t.TempDir(), "other.img")
	os.WriteFile(other, []byte("another image"), 0o644)
	for _, tc := range []struct{ name, prov, want string }{
		{"disallowed builder", attest("b.json", "https://evil.example/ci", "ci", img), `provenance: builder "https://evil.example/ci" is not allowed for acme/router-x1`},
		{"bad signature", attest("s.json", builder, "rogue", img), "provenance: envelope signatures: 0 of the 1 policy keys signed validly, need 1"},
		{"subject digest", attest("d.json", builder, "ci", other), "provenance: subject digest: no subject has the release image's sha256"},
	} {
		if code, errOut := add("1.0.0", tc.prov); code != cli.ExitFailure || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d: %s", tc.name, code, errOut)
		}
	}

	good := attest("good.json", builder, "ci", img)
	if code, errOut := add("1.0.0", good); code != cli.ExitOK || !strings.Contains(errOut, "provenance ") || !strings.Contains(errOut, "signed by "+ciID) {
		t.Fatalf("release add: exit %d: %s", code, errOut)
	}
	// The approver sees the bound provenance before signing.
	goodData, _ := os.ReadFile(good)
	goodSum := sha256.Sum256(goodData)
	if _, _, errOut := runCLI(t, "release", "sign", "--dir", dir, "--product", "acme/router-x1", "--version", "1.0.0", "--key", kp("bob")); !strings.Contains(errOut, "provenance") || !strings.Contains(errOut, hex.EncodeToString(goodSum[:])) {
		t.Fatalf("release sign does not show the provenance:\n%s", errOut)
	}
	mustCLI(t, "repo", "publish", "--dir", dir)

	root := filepath.Join(dir, "public", "metadata", "1.root.json")
	want := []string{
		"builder", builder, "build type", buildType,
		"source", "git+" + source + "@refs/heads/main commit " + commit,
		"invocation", "build-7",
		"built by (DSSE signers)", ciID + " (verified against the repository's provenance policy)",
		"approved by", "(valid signatures on acme.router-x1 version 1)",
	}
	out := mustCLI(t, "verify", "--root", root, "--repo", dir, "--product", "acme/router-x1", "--show-provenance")
	for _, w := range append(want, aliceID, bobID) {
		if !strings.Contains(out, w) {
			t.Errorf("verify --show-provenance lacks %q:\n%s", w, out)
		}
	}

	// Over HTTP, from the served public/: the same, with the signer key
	// IDs as the envelope names them.
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "public"))))
	defer srv.Close()
	out = mustCLI(t, "verify", "--root", root, "--repo", srv.URL, "--product", "acme/router-x1", "--show-provenance", "--json")
	var rep struct {
		Version    string `json:"version"`
		Provenance struct {
			Builder, Commit string
			DSSESigners     []string `json:"dsse_signers"`
			Verified        bool     `json:"dsse_signers_verified"`
			Approvers       []string `json:"approvers"`
		} `json:"provenance"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Version != "1.0.0" || rep.Provenance.Builder != builder || rep.Provenance.Commit != commit || rep.Provenance.Verified ||
		strings.Join(rep.Provenance.DSSESigners, ",") != ciID || len(rep.Provenance.Approvers) != 2 {
		t.Fatalf("verify --json:\n%s", out)
	}

	// The served envelope must be the one the signed metadata binds.
	matches, _ := filepath.Glob(filepath.Join(dir, "public", "targets", "acme", "router-x1", "1.0.0", "*.provenance.json"))
	if len(matches) != 1 {
		t.Fatalf("published envelopes: %v", matches)
	}
	data, _ := os.ReadFile(matches[0])
	os.WriteFile(matches[0], append(data, '\n'), 0o644)
	if code, _, errOut := runCLI(t, "verify", "--root", root, "--repo", dir, "--product", "acme/router-x1", "--show-provenance"); code != cli.ExitFailure ||
		!strings.Contains(errOut, "is not the one the signed release metadata binds") {
		t.Fatalf("tampered envelope: exit %d: %s", code, errOut)
	}
	// --show-provenance needs --repo.
	if code, _, errOut := runCLI(t, "verify", "--root", root, "--bundle", img, "--show-provenance"); code != cli.ExitUsage || !strings.Contains(errOut, "--show-provenance needs --repo") {
		t.Fatalf("--bundle --show-provenance: exit %d: %s", code, errOut)
	}
}

func pubID(t *testing.T, priv string) string {
	t.Helper()
	pub, err := keys.LoadPublic(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
