package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// Director mode (Uptane's two-repository rule): the server's director signs,
// per device and with an online key, TUF metadata whose targets.json lists
// the one release assigned to the device; the vendor's image repository
// signs the releases with offline keys. The agent installs a target only
// when the director assigns it to THIS device and the image repository
// lists the same path with the same length and hashes.
const (
	// PathDirector is the director repository on the server (mTLS; the
	// server answers for the calling device only).
	PathDirector = "/api/v1/director/"
	// DirectorStoreDir is the director's TUF store inside the device
	// state directory (separate from the image repository's).
	DirectorStoreDir = "director"
	// MaxDirectorMetadataSize bounds the director's snapshot and targets
	// files: one device's assignment is small.
	MaxDirectorMetadataSize = 64 << 10
	// MaxDirectorCustomSize bounds the custom field of the assigned target.
	MaxDirectorCustomSize = 4 << 10
	// DirectorCustomKey is the key of the director's object in the
	// assigned target's custom field.
	DirectorCustomKey = "airlock_director"
)

var (
	// ErrDirector is wrapped by every refused director assignment.
	ErrDirector = errors.New("director assignment refused")
	// ErrDirectorUnavailable is wrapped when the director metadata could
	// not be fetched or is no longer fresh (expired): the agent keeps
	// running the current release and retries with backoff. It is not
	// reported to the server as an install failure.
	ErrDirectorUnavailable = errors.New("director unavailable")
	// ErrWrongDevice means the director's metadata assigns the release to
	// another device (a server bug, or metadata replayed from another
	// device).
	ErrWrongDevice = fmt.Errorf("%w: the assignment names another device", ErrDirector)
	// ErrNotAuthorized means the image repository does not list the
	// assigned target with the same length and hashes: the director (its
	// online key) assigned an image the vendor never signed. Either the
	// server is compromised, or the repositories are out of sync.
	ErrNotAuthorized = fmt.Errorf("%w: the image repository does not authorize the assigned target", ErrDirector)
)

// DirectorAssignment is a verified director assignment.
type DirectorAssignment struct {
	Target  *metadata.TargetFiles // path, length and hashes the director signed
	Device  string
	Rollout string
	// Forced is the operator's "install even if the device's own deferral
	// policy would wait" flag. It never bypasses a signature, the two
	// repository rule, the release policy or the security version; the
	// agent has no deferral policy yet, so it only shows in logs.
	Forced bool
}

type directorCustom struct {
	Device  string `json:"device"`
	Rollout string `json:"rollout"`
	Forced  bool   `json:"forced"`
}

// ParseDirectorCustom parses the custom field of an assigned target: a
// JSON object with the key DirectorCustomKey holding exactly {device,
// rollout, forced} (other top-level keys belong to other extensions and
// are ignored). It is strict within the director's object: no unknown or
// missing fields, one JSON value, within MaxDirectorCustomSize.
func ParseDirectorCustom(raw []byte) (device, rollout string, forced bool, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: custom: %s", ErrDirector, fmt.Sprintf(format, args...))
	}
	if len(raw) > MaxDirectorCustomSize {
		return "", "", false, bad("%d bytes, the limit is MaxDirectorCustomSize %d", len(raw), MaxDirectorCustomSize)
	}
	var outer map[string]json.RawMessage
	if err := decodeOne(raw, &outer, false); err != nil {
		return "", "", false, bad("%v", err)
	}
	inner, ok := outer[DirectorCustomKey]
	if !ok {
		return "", "", false, bad("no %q object", DirectorCustomKey)
	}
	var presence map[string]json.RawMessage
	if err := decodeOne(inner, &presence, false); err != nil {
		return "", "", false, bad("%s: %v", DirectorCustomKey, err)
	}
	for _, k := range []string{"device", "rollout", "forced"} {
		if _, ok := presence[k]; !ok {
			return "", "", false, bad("%s: missing %q", DirectorCustomKey, k)
		}
	}
	var dc directorCustom
	if err := decodeOne(inner, &dc, true); err != nil {
		return "", "", false, bad("%s: %v", DirectorCustomKey, err)
	}
	if dc.Device == "" {
		return "", "", false, bad("%s: empty device", DirectorCustomKey)
	}
	return dc.Device, dc.Rollout, dc.Forced, nil
}

// decodeOne decodes exactly one JSON value (no trailing data).
func decodeOne(data []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// directorLimits bound the director's metadata.
var directorLimits = trust.Limits{SnapshotSize: MaxDirectorMetadataSize, TargetsSize: MaxDirectorMetadataSize}

// directorStore returns the director's TUF store, seeded with the
// provisioned director root on first use.
func (a *Agent) directorStore(c *cycle) (trust.Store, error) {
	cfg := c.dev.Config()
	dir := filepath.Join(cfg.Path(cfg.StateDir), DirectorStoreDir)
	st := trust.NewDirStore(a.fs, dir)
	if _, err := st.Get("root.json"); err == nil {
		return st, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	root, err := durable.ReadFile(a.fs, a.cfg.Path(a.cfg.DirectorRoot), trust.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read director_root: %w", err)
	}
	// It must verify against itself before it is trusted.
	ms := trust.NewMemStore()
	if err := ms.Put("root.json", root); err != nil {
		return nil, err
	}
	if _, err := trust.New(ms, &trust.MapSource{}, trust.Config{}); err != nil {
		return nil, fmt.Errorf("director_root %s: %w", a.cfg.DirectorRoot, err)
	}
	if err := st.Put("root.json", root); err != nil {
		return nil, err
	}
	return st, nil
}

// refreshDirector refreshes the director repository (persisting verified
// metadata in its store, the reference for rollback and freeze checks)
// and returns the device's verified assignment, nil if none.
func (a *Agent) refreshDirector(ctx context.Context, c *cycle) (*DirectorAssignment, error) {
	st, err := a.directorStore(c)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(a.cfg.Server, "/") + PathDirector
	client, err := trust.New(st, trust.NewHTTPSource(base, "", c.http), trust.Config{Now: a.opts.Now, Limits: directorLimits})
	if err != nil {
		return nil, err
	}
	if err := client.Refresh(ctx); err != nil {
		if isVerificationError(err) && !errors.Is(err, trust.ErrExpired) {
			return nil, fmt.Errorf("%w: director metadata: %w", ErrDirector, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrDirectorUnavailable, err)
	}
	tg := client.Trusted().Targets
	switch n := len(tg.Signed.Targets); {
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, fmt.Errorf("%w: director targets list %d targets, a device is assigned at most one", ErrDirector, n)
	}
	var tf *metadata.TargetFiles
	for _, path := range slices.Sorted(maps.Keys(tg.Signed.Targets)) {
		if tf, err = client.Target(ctx, path); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDirector, err)
		}
	}
	if tf.Custom == nil {
		return nil, fmt.Errorf("%w: assigned target %q has no custom field", ErrDirector, tf.Path)
	}
	dev, rollout, forced, err := ParseDirectorCustom(*tf.Custom)
	if err != nil {
		return nil, err
	}
	return &DirectorAssignment{Target: tf, Device: dev, Rollout: rollout, Forced: forced}, nil
}

// isVerificationError reports whether err is a TUF verification failure
// (as opposed to a failure to fetch).
func isVerificationError(err error) bool {
	for _, s := range []error{trust.ErrMalformed, trust.ErrSignature, trust.ErrExpired, trust.ErrRollback,
		trust.ErrMixAndMatch, trust.ErrLength, trust.ErrHash, trust.ErrUnsupportedHash, trust.ErrInvalidName} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// SameTarget checks the two-repository rule for one target: the image
// repository's description img authorizes the director's dir when both
// have the same path and length, both list sha256 with the same digest,
// and every other algorithm both list has the same digest.
func SameTarget(dir, img *metadata.TargetFiles) error {
	if dir == nil || img == nil {
		return fmt.Errorf("%w: missing target description", ErrNotAuthorized)
	}
	if dir.Path != img.Path {
		return fmt.Errorf("%w: path %q, image repository %q", ErrNotAuthorized, dir.Path, img.Path)
	}
	if dir.Length != img.Length {
		return fmt.Errorf("%w: %q: director length %d, image repository length %d", ErrNotAuthorized, dir.Path, dir.Length, img.Length)
	}
	if len(dir.Hashes["sha256"]) == 0 || len(img.Hashes["sha256"]) == 0 {
		return fmt.Errorf("%w: %q: both repositories must list a sha256 hash", ErrNotAuthorized, dir.Path)
	}
	for alg, d := range dir.Hashes {
		if i, ok := img.Hashes[alg]; ok && !bytes.Equal(d, i) {
			return fmt.Errorf("%w: %q: %s differs between the director and the image repository", ErrNotAuthorized, dir.Path, alg)
		}
	}
	return nil
}

// directorUpdate is update in director mode.
func (a *Agent) directorUpdate(ctx context.Context, c *cycle) (*Result, error) {
	fail := func(version string, err error) (*Result, error) {
		a.report(ctx, c, StatusFailed, version, "director: "+err.Error())
		return &Result{Action: ActionFailed, Version: version, Message: err.Error()}, err
	}
	asg, err := a.refreshDirector(ctx, c)
	if errors.Is(err, ErrDirectorUnavailable) {
		// Keep running what runs; the next poll retries (with backoff).
		a.log.Warn("director unavailable; keeping the running release", "error", err)
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: err.Error()}, err
	}
	if err != nil {
		return fail("", err)
	}
	if asg == nil {
		a.log.Info("no release assigned by the director", "version", c.view.currentVersion())
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: "no assignment"}, nil
	}
	path := asg.Target.Path
	if asg.Device != c.deviceID {
		return fail("", fmt.Errorf("%w: %q is assigned to device %q, this device is %q", ErrWrongDevice, path, asg.Device, c.deviceID))
	}
	if path == c.view.currentPath {
		a.log.Info("running the assigned release", "version", c.view.currentVersion(), "rollout", asg.Rollout)
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: "running the assigned release"}, nil
	}
	if slices.Contains(c.view.rejected, path) {
		msg := fmt.Sprintf("the assigned release %s was rolled back on this device; not retrying it", path)
		a.log.Warn(msg, "rollout", asg.Rollout)
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: msg}, nil
	}
	a.log.Info("director assignment", "target", path, "rollout", asg.Rollout, "forced", asg.Forced)

	// The image repository must authorize exactly this target.
	src := a.source(c)
	client, err := trust.New(c.dev.PreviewStore(), src, trust.Config{Now: a.opts.Now})
	if err != nil {
		return fail("", err)
	}
	if err := client.Refresh(ctx); err != nil {
		return fail("", fmt.Errorf("image repository: %w", err))
	}
	img, err := client.Target(ctx, path)
	if errors.Is(err, trust.ErrTargetNotFound) {
		return fail("", fmt.Errorf("%w: %q is not in the image repository", ErrNotAuthorized, path))
	}
	if err != nil {
		return fail("", fmt.Errorf("image repository: %w", err))
	}
	if err := SameTarget(asg.Target, img); err != nil {
		return fail("", err)
	}
	if img.Custom == nil {
		return fail("", fmt.Errorf("%w: %q carries no release metadata", ErrNotAuthorized, path))
	}
	rel, err := release.ParseCustom(*img.Custom)
	if err != nil {
		return fail("", fmt.Errorf("image repository: %q: %w", path, err))
	}
	if err := release.CheckTargetPath(rel, path); err != nil {
		return fail("", fmt.Errorf("image repository: %w", err))
	}
	version := rel.Version.String()
	// The device's policy still applies (Install checks it again).
	if err := release.Check(rel, c.view.policy, release.CheckOptions{}); err != nil {
		return fail(version, err)
	}
	return a.install(ctx, c, src, path, version, img.Length)
}
