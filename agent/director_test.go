package agent

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/trust/trusttest"
	"github.com/airlockfw/airlock/verify"
)

// directorRepo is a director repository as the server keeps it for one
// device: real signed TUF metadata (trusttest, consistent snapshots) whose
// targets.json lists at most one assigned target, served under
// PathDirector by the test device API over mTLS.
type directorRepo struct {
	*trusttest.Repo
}

func newDirectorRepo() *directorRepo {
	return &directorRepo{trusttest.New(time.Now().Add(24 * time.Hour))}
}

func (d *directorRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/metadata/" + strings.TrimPrefix(r.URL.Path, PathDirector)
	d.Repo.ServeHTTP(w, r2)
}

// assign signs a new targets version listing tf (nil: no assignment) with
// the director's custom field for device, then new snapshot and timestamp
// versions.
func (d *directorRepo) assign(t *testing.T, tf *metadata.TargetFiles, device string) {
	t.Helper()
	tg := d.Targets["targets"]
	tg.Signed.Targets = map[string]*metadata.TargetFiles{}
	if tf != nil {
		custom := json.RawMessage(`{"airlock_director":{"device":"` + device + `","rollout":"r-1","forced":false}}`)
		c := *tf
		c.Custom = &custom
		tg.Signed.Targets[tf.Path] = &c
	}
	d.BumpTargets("targets")
	d.UpdateSnapshot()
}

// writeRoot writes director root v1 to dir/director-root.json.
func (d *directorRepo) writeRoot(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "director-root.json"), d.RootBytes(1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// imageTarget returns the image repository's description of a release.
func imageTarget(t *testing.T, v *vendor, version string) *metadata.TargetFiles {
	t.Helper()
	role, err := v.r.PublishedRole(strings.ReplaceAll(testProduct, "/", "."))
	if err != nil {
		t.Fatal(err)
	}
	for p, tf := range role.Signed.Targets {
		if strings.Contains(p, "/"+version+"/") {
			c := *tf
			c.Path = p
			return &c
		}
	}
	t.Fatalf("no release %s in the image repository", version)
	return nil
}

// directorEnv is a server environment in director mode: the image
// repository has 1.0.0 (installed) and 1.1.0.
type directorEnv struct {
	*serverEnv
	dir *directorRepo
}

func newDirectorEnv(t *testing.T) *directorEnv {
	e := &directorEnv{serverEnv: newServerEnv(t), dir: newDirectorRepo()}
	e.api.director = e.dir
	e.dir.writeRoot(t, e.serverEnv.dir)
	return e
}

func (e *directorEnv) agent(t *testing.T) *Agent {
	return e.serverEnv.agent(t, "director_root = \"director-root.json\"\n")
}

// deviceID enrolls the agent (one cycle without assignment) and returns
// the device ID the server issued.
func (e *directorEnv) enroll(t *testing.T, a *Agent) string {
	t.Helper()
	res, err := a.RunOnce(context.Background())
	if err != nil || res.Action != ActionNone {
		t.Fatalf("first cycle (no assignment) = %+v, %v; want none", res, err)
	}
	id, err := loadIdentity(a.fs, a.cfg.Path(a.cfg.IdentityDir))
	if err != nil {
		t.Fatal(err)
	}
	return id.Leaf.Subject.CommonName
}

func TestDirectorAssignmentSignedByBothRepositoriesIsInstalled(t *testing.T) {
	e := newDirectorEnv(t)
	a := e.agent(t)
	ctx := context.Background()
	id := e.enroll(t, a)
	// The image repository offers 1.1.0, but without an assignment the
	// device stays on 1.0.0.
	if v, _ := deviceVersion(t, e.devCfg); v != "1.0.0" {
		t.Fatalf("without an assignment the device runs %s, want 1.0.0", v)
	}
	e.dir.assign(t, imageTarget(t, e.v, "1.1.0"), id)
	res, err := a.RunOnce(ctx)
	if err != nil || res.Action != ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("RunOnce = %+v, %v; want committed 1.1.0", res, err)
	}
	if v, _ := deviceVersion(t, e.devCfg); v != "1.1.0" {
		t.Fatalf("device runs %s, want 1.1.0", v)
	}
	res, err = a.RunOnce(ctx)
	if err != nil || res.Action != ActionNone {
		t.Fatalf("RunOnce after commit = %+v, %v; want none", res, err)
	}
	if want := "up to date: version 1.1.0 runs, the release the director assigns to this device"; res.Message != want {
		t.Errorf("RunOnce after commit: message %q, want %q", res.Message, want)
	}
}

// TestStolenDirectorKeyCannotInstallUnsignedImage: an attacker holding the
// director's online key assigns images the vendor never signed. The device
// refuses before downloading anything and nothing changes.
func TestStolenDirectorKeyCannotInstallUnsignedImage(t *testing.T) {
	e := newDirectorEnv(t)
	a := e.agent(t)
	id := e.enroll(t, a)
	good := imageTarget(t, e.v, "1.1.0")
	evil := testImage(99, len(testImage(1, 100)))
	evilTF, err := metadata.TargetFile().FromBytes(good.Path, evil, "sha256", "sha512")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tf   func() *metadata.TargetFiles
	}{
		{"unknown path", func() *metadata.TargetFiles {
			tf, _ := metadata.TargetFile().FromBytes(testProduct+"/6.6.6/evil.img", evil, "sha256")
			tf.Path = testProduct + "/6.6.6/evil.img"
			return tf
		}},
		{"known path, other image", func() *metadata.TargetFiles {
			c := *evilTF
			c.Path = good.Path
			return &c
		}},
		{"known path, other length", func() *metadata.TargetFiles {
			c := *good
			c.Length++
			return &c
		}},
		{"known path, no sha256", func() *metadata.TargetFiles {
			c := *good
			c.Hashes = metadata.Hashes{"sha512": good.Hashes["sha512"]}
			return &c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fingerprint(t, e.devCfg)
			e.dir.assign(t, tt.tf(), id)
			e.api.resetReports()
			res, err := a.RunOnce(context.Background())
			if !errors.Is(err, ErrNotAuthorized) || res.Action != ActionFailed {
				t.Fatalf("RunOnce = %+v, %v; want failed, ErrNotAuthorized", res, err)
			}
			if after := fingerprint(t, e.devCfg); after != before {
				t.Error("a refused assignment changed the device (active slot, boot control, counter or trusted metadata)")
			}
			if k := e.api.kinds(); slices.ContainsFunc(k, func(s string) bool { return strings.HasPrefix(s, deviceapi.StateDownloading) }) {
				t.Errorf("reports %q: the device started a download", k)
			}
			if r := e.api.lastReport(); r.Kind != deviceapi.StateFailed || !strings.Contains(r.Message, "image repository") {
				t.Errorf("last report = %+v, want a failure naming the image repository", r)
			}
		})
	}
}

// TestDirectorOfflineDeviceKeepsRunningAndRetries: with the director down
// the agent reports nothing, keeps its release, and Run retries with
// backoff until the director is back and the assignment installs.
func TestDirectorOfflineDeviceKeepsRunningAndRetries(t *testing.T) {
	e := newDirectorEnv(t)
	a := e.agent(t)
	id := e.enroll(t, a)
	e.dir.assign(t, imageTarget(t, e.v, "1.1.0"), id)
	e.api.directorDown.Store(true)
	e.api.resetReports()
	before := fingerprint(t, e.devCfg)
	res, err := a.RunOnce(context.Background())
	if !errors.Is(err, ErrDirectorUnavailable) || res.Action != ActionNone {
		t.Fatalf("RunOnce = %+v, %v; want none, ErrDirectorUnavailable", res, err)
	}
	if k := e.api.kinds(); len(k) != 0 {
		t.Errorf("reports %q while the director is offline, want none", k)
	}
	if fingerprint(t, e.devCfg) != before {
		t.Error("the device changed while the director was offline")
	}

	// Run keeps polling (backoff 10ms); the director comes back.
	a.opts.InitialBackoff = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	e.api.directorDown.Store(false)
	for ctx.Err() == nil {
		if slices.Contains(e.api.kinds(), deviceapi.StateCommitted+" 1.1.0") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if v, _ := deviceVersion(t, e.devCfg); v != "1.1.0" {
		t.Fatalf("after the director came back the device runs %s, want 1.1.0", v)
	}
}

func TestAssignmentForAnotherDeviceIsRefused(t *testing.T) {
	e := newDirectorEnv(t)
	a := e.agent(t)
	e.enroll(t, a)
	before := fingerprint(t, e.devCfg)
	e.dir.assign(t, imageTarget(t, e.v, "1.1.0"), "dev-someone-else")
	res, err := a.RunOnce(context.Background())
	if !errors.Is(err, ErrWrongDevice) || res.Action != ActionFailed {
		t.Fatalf("RunOnce = %+v, %v; want failed, ErrWrongDevice", res, err)
	}
	if fingerprint(t, e.devCfg) != before {
		t.Error("another device's assignment changed this device")
	}
}

// TestStaleDirectorMetadataIsRefused: expired director metadata (freeze)
// and older versions than the device already trusted (rollback) never
// assign anything.
func TestStaleDirectorMetadataIsRefused(t *testing.T) {
	tests := []struct {
		name   string
		attack func(t *testing.T, e *directorEnv, a *Agent, tf *metadata.TargetFiles, id string)
		want   []error
	}{
		{"expired timestamp", func(t *testing.T, e *directorEnv, _ *Agent, tf *metadata.TargetFiles, id string) {
			e.dir.Timestamp.Signed.Expires = time.Now().Add(-time.Minute)
			e.dir.assign(t, tf, id)
		}, []error{ErrDirectorUnavailable, trust.ErrExpired}},
		{"expired targets", func(t *testing.T, e *directorEnv, _ *Agent, tf *metadata.TargetFiles, id string) {
			e.dir.Targets["targets"].Signed.Expires = time.Now().Add(-time.Minute)
			e.dir.assign(t, tf, id)
		}, []error{ErrDirectorUnavailable, trust.ErrExpired}},
		{"timestamp rollback", func(t *testing.T, e *directorEnv, a *Agent, tf *metadata.TargetFiles, id string) {
			// The device sees and trusts timestamp v3; the server then
			// replays v2 (which pins an assigning snapshot).
			e.dir.assign(t, tf, id)
			v2 := e.dir.File("timestamp.json")
			e.dir.assign(t, nil, id)
			if res, err := a.RunOnce(context.Background()); err != nil || res.Action != ActionNone {
				t.Fatalf("RunOnce = %+v, %v", res, err)
			}
			e.dir.SetFile("timestamp.json", v2)
		}, []error{ErrDirector, trust.ErrRollback}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDirectorEnv(t)
			a := e.agent(t)
			id := e.enroll(t, a)
			before := fingerprint(t, e.devCfg)
			tt.attack(t, e, a, imageTarget(t, e.v, "1.1.0"), id)
			res, err := a.RunOnce(context.Background())
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("RunOnce = %+v, %v; want an error wrapping %v", res, err, w)
				}
			}
			if v, _ := deviceVersion(t, e.devCfg); v != "1.0.0" || fingerprint(t, e.devCfg) != before {
				t.Errorf("stale director metadata changed the device (runs %s)", v)
			}
		})
	}
}

func TestParseDirectorCustom(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"valid", `{"airlock_director":{"device":"dev-1","rollout":"r-1","forced":true}}`, true},
		{"other extension keys ignored", `{"x":1,"airlock_director":{"device":"dev-1","rollout":"","forced":false}}`, true},
		{"missing object", `{"x":1}`, false},
		{"missing device", `{"airlock_director":{"rollout":"r","forced":false}}`, false},
		{"missing forced", `{"airlock_director":{"device":"d","rollout":"r"}}`, false},
		{"empty device", `{"airlock_director":{"device":"","rollout":"r","forced":false}}`, false},
		{"unknown field", `{"airlock_director":{"device":"d","rollout":"r","forced":false,"skip_checks":true}}`, false},
		{"wrong type", `{"airlock_director":{"device":"d","rollout":"r","forced":"yes"}}`, false},
		{"trailing data", `{"airlock_director":{"device":"d","rollout":"r","forced":false}} {}`, false},
		{"not an object", `[]`, false},
		{"too large", `{"airlock_director":{"device":"` + strings.Repeat("d", MaxDirectorCustomSize) + `","rollout":"r","forced":false}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, _, _, err := ParseDirectorCustom([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("ParseDirectorCustom = %q, %v; want ok=%v", dev, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrDirector) {
				t.Errorf("error %v does not wrap ErrDirector", err)
			}
		})
	}
}

func FuzzParseDirectorCustom(f *testing.F) {
	f.Add([]byte(`{"airlock_director":{"device":"dev-1","rollout":"r-1","forced":true}}`))
	f.Add([]byte(`{"x":[1,2],"airlock_director":{"device":"d","rollout":"","forced":false}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dev, _, _, err := ParseDirectorCustom(data)
		if err == nil && dev == "" {
			t.Fatal("accepted an assignment without a device")
		}
		if err != nil && !errors.Is(err, ErrDirector) {
			t.Fatalf("error %v does not wrap ErrDirector", err)
		}
	})
}

func TestSameTarget(t *testing.T) {
	content := []byte("firmware")
	s256, s512 := sha256.Sum256(content), sha512.Sum512(content)
	base := &trust.TargetFiles{Path: "p/1.0.0/fw.img", Length: int64(len(content)),
		Hashes: trust.Hashes{"sha256": s256[:], "sha512": s512[:]}}
	mod := func(f func(*trust.TargetFiles)) *trust.TargetFiles {
		c := *base
		c.Hashes = trust.Hashes{}
		for k, v := range base.Hashes {
			c.Hashes[k] = slices.Clone(v)
		}
		f(&c)
		return &c
	}
	tests := []struct {
		name string
		dir  *trust.TargetFiles
		ok   bool
	}{
		{"same", mod(func(*trust.TargetFiles) {}), true},
		{"director lists only sha256", mod(func(c *trust.TargetFiles) { delete(c.Hashes, "sha512") }), true},
		{"other path", mod(func(c *trust.TargetFiles) { c.Path = "p/1.0.0/other.img" }), false},
		{"other length", mod(func(c *trust.TargetFiles) { c.Length = 7 }), false},
		{"other sha256", mod(func(c *trust.TargetFiles) { c.Hashes["sha256"][0] ^= 1 }), false},
		{"other sha512", mod(func(c *trust.TargetFiles) { c.Hashes["sha512"][0] ^= 1 }), false},
		{"no sha256", mod(func(c *trust.TargetFiles) { delete(c.Hashes, "sha256") }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verify.SameTarget(tt.dir, base)
			if (err == nil) != tt.ok {
				t.Fatalf("SameTarget = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNotAuthorized) {
				t.Errorf("error %v does not wrap ErrNotAuthorized", err)
			}
		})
	}
}

// TestCheckinAssignmentIsInformational: the check-in's assignment object
// decodes (new fields from a newer server are ignored), and a malformed
// one fails the response like any other invalid field.
func TestCheckinAssignmentIsInformational(t *testing.T) {
	var resp deviceapi.CheckinResponse
	in := `{"poll_interval_seconds":60,"repository":{"metadata_url":"/m","targets_url":"/t"},"server_time":"2024-01-01T00:00:00Z",` +
		`"assignment":{"rollout_id":"r-1","release":"acme/router-x1@1.1.0","target_path":"acme/router-x1/1.1.0/fw.img","stage":1}}`
	if err := DecodeResponse([]byte(in), &resp); err != nil {
		t.Fatal(err)
	}
	want := &deviceapi.Assignment{RolloutID: "r-1", Release: "acme/router-x1@1.1.0", TargetPath: "acme/router-x1/1.1.0/fw.img"}
	if resp.Assignment == nil || *resp.Assignment != *want {
		t.Errorf("assignment = %+v, want %+v", resp.Assignment, want)
	}
	bad := strings.Replace(in, `"rollout_id":"r-1"`, `"rollout_id":7`, 1)
	if err := DecodeResponse([]byte(bad), &resp); !errors.Is(err, ErrResponse) {
		t.Errorf("malformed assignment: %v, want ErrResponse", err)
	}
}
