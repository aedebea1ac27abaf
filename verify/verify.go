package verify

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// Options are the inputs of Bundle and Repo (`airlock verify`): the trust
// anchor, optionally the trusted state of a device, and the device facts.
type Options struct {
	// Root is the trusted root metadata (a device's factory root, or any
	// root the verifier already trusts). Required.
	Root []byte
	// Store, if not nil, is the trusted metadata to verify against (a
	// device's store, read-only: device.Device.PreviewStore), so that
	// rollback and freeze are judged exactly as that device judges them.
	Store trust.Store
	// Now is the reference time for expiry; zero means time.Now.
	Now time.Time
	// Facts describe the device; checks of unstated facts are left out.
	Facts Facts
	// Version selects one release of the product in a repository; empty
	// means the newest release that passes.
	Version string
	// HTTPClient is used for repository URLs (nil: a client with
	// connection timeouts, TLS 1.2+).
	HTTPClient *http.Client
	// Progress, if not nil, is called when the payload stage starts, with
	// the installed image's length; the installed bytes are then written to
	// the writer it returns (a progress display), which must not fail.
	Progress func(total int64) io.Writer
	// RequireTimestamp is Config.RequireTimestamp (a device's
	// bundle_freshness = "timestamp").
	RequireTimestamp bool
}

// RoleInfo summarises one verified metadata file.
type RoleInfo struct {
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Threshold int       `json:"threshold"`
	Keys      int       `json:"keys"`
}

// Report is the result of a successful verification.
type Report struct {
	Source          string            `json:"source"`
	TargetPath      string            `json:"target"`
	Length          int64             `json:"length"`
	SHA256          string            `json:"sha256"`
	Release         *release.Metadata `json:"-"`
	Product         string            `json:"product"`
	Version         string            `json:"version"`
	SecurityVersion uint32            `json:"security_version"`
	Models          []string          `json:"models"`
	HWRev           string            `json:"hw_rev"`
	Channel         string            `json:"channel"`
	Environment     string            `json:"environment,omitempty"`
	Compression     string            `json:"compression"`
	InstalledLength int64             `json:"installed_length"`
	InstalledSHA256 string            `json:"installed_sha256"`
	// IndexRoot is, for a schema 2 release, the signed dm-verity root hash
	// every block was verified against; DeltaFrom the base release of a
	// delta bundle (whose blocks only a device running it can check).
	IndexRoot string     `json:"index_root,omitempty"`
	DeltaFrom string     `json:"delta_from,omitempty"`
	Roles     []RoleInfo `json:"roles"`
	// InstallsUntil is, for a bundle, when the first of the roles whose
	// expiry is checked (root, targets, delegated; and timestamp and
	// snapshot with RequireTimestamp) expires, ExpiringRole that role.
	InstallsUntil time.Time `json:"installs_until,omitzero"`
	ExpiringRole  string    `json:"expiring_role,omitempty"`
	// Checks are the pipeline stages passed; Skipped the policy checks left
	// out because their device fact was not stated.
	// Logged says the release was found in the transparency log the
	// trusted root requires, at LogIndex.
	Logged   bool     `json:"logged,omitempty"`
	LogIndex uint64   `json:"log_index,omitempty"`
	Checks   []string `json:"checks"`
	Skipped  []string `json:"skipped,omitempty"`
}

func (o *Options) config(src trust.Source) Config {
	cfg := Config{Root: o.Root, Store: o.Store, Source: src, RequireTimestamp: o.RequireTimestamp}
	if !o.Now.IsZero() {
		t := o.Now
		cfg.Now = func() time.Time { return t }
	}
	return cfg
}

// Bundle verifies an offline bundle read from r, payload and trailer
// included, with the pipeline a device installs it with. It writes nothing.
func Bundle(ctx context.Context, r io.Reader, opts Options) (*Report, error) {
	src, err := OpenBundle(bufio.NewReaderSize(r, payload.BufferSize))
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, opts.config(src))
	if err != nil {
		return nil, err
	}
	t, err := s.Check(ctx, src.TargetPath(), opts.Facts)
	if err != nil {
		return nil, err
	}
	if err := discardPayload(ctx, t, opts.Progress); err != nil {
		return nil, err
	}
	rep := report(t, "bundle")
	rep.DeltaFrom = src.DeltaFrom()
	rep.Checks = append([]string{CheckFormat}, rep.Checks...)
	for _, r := range rep.Roles {
		if (r.Role == trust.RoleTimestamp || r.Role == trust.RoleSnapshot) && !opts.RequireTimestamp {
			continue
		}
		if rep.ExpiringRole == "" || r.Expires.Before(rep.InstallsUntil) {
			rep.InstallsUntil, rep.ExpiringRole = r.Expires, r.Role
		}
	}
	return rep, nil
}

// Repo verifies the newest release of the facts' product that passes (or
// Options.Version) in a repository: a local repository directory (made by
// airlock repo init; its public/ subdirectory is read) or the http(s) URL of
// the served public/ directory, payload included.
func Repo(ctx context.Context, location string, opts Options) (*Report, error) {
	var src trust.Source
	if strings.HasPrefix(location, "https://") || strings.HasPrefix(location, "http://") {
		base := strings.TrimSuffix(location, "/")
		src = trust.NewHTTPSource(base+"/metadata/", base+"/targets/", opts.HTTPClient)
	} else {
		dir := location
		if fi, err := os.Stat(filepath.Join(dir, "public")); err == nil && fi.IsDir() {
			dir = filepath.Join(dir, "public")
		}
		src = trust.NewDirSource(dir)
	}
	s, err := Open(ctx, opts.config(src))
	if err != nil {
		return nil, err
	}
	t, err := s.Select(ctx, opts.Facts, Selection{Version: opts.Version})
	if err != nil {
		return nil, err
	}
	if err := discardPayload(ctx, t, opts.Progress); err != nil {
		return nil, err
	}
	return report(t, location), nil
}

func discardPayload(ctx context.Context, t *Target, progress func(int64) io.Writer) error {
	p, err := OpenPayload(ctx, t)
	if err != nil {
		return err
	}
	defer p.Close()
	dst := io.Discard
	if progress != nil {
		dst = progress(t.Release.Installed.Length)
	}
	_, err = CopyPayload(dst, p)
	return err
}

func report(t *Target, source string) *Report {
	rel := t.Release
	rep := &Report{
		Source:          source,
		TargetPath:      t.Path,
		Length:          t.File.Length,
		SHA256:          hex.EncodeToString(t.File.Hashes["sha256"]),
		Release:         rel,
		Product:         rel.Product.String(),
		Version:         rel.Version.String(),
		SecurityVersion: rel.SecurityVersion,
		Models:          rel.Models,
		HWRev:           rel.HWRev.String(),
		Channel:         rel.ChannelOrDefault(),
		Environment:     rel.Environment,
		Compression:     string(rel.Install.Compression),
		InstalledLength: rel.Installed.Length,
		InstalledSHA256: hex.EncodeToString(rel.Installed.SHA256[:]),
		Roles:           summarize(t.session.client),
		Checks:          []string{CheckMetadata, CheckTarget, CheckRelease, CheckPolicy, CheckPayload},
		LogIndex:        t.LogIndex,
		Skipped:         t.facts.Skipped(),
	}
	if t.LogCheckpoint != nil {
		rep.Checks = []string{CheckMetadata, CheckTarget, CheckRelease, CheckPolicy, CheckTransparency, CheckPayload}
		rep.Logged = true
	}
	if x := rel.Index; x != nil {
		rep.IndexRoot = hex.EncodeToString(x.Root[:])
	}
	return rep
}

func summarize(c *trust.Client) []RoleInfo {
	t := c.Trusted()
	var out []RoleInfo
	root := t.Root.Signed
	add := func(role string, version int64, exp time.Time) {
		ri := RoleInfo{Role: role, Version: version, Expires: exp}
		if r, ok := root.Roles[role]; ok {
			ri.Threshold, ri.Keys = r.Threshold, len(r.KeyIDs)
		}
		out = append(out, ri)
	}
	add("root", root.Version, root.Expires)
	if t.Timestamp != nil {
		add("timestamp", t.Timestamp.Signed.Version, t.Timestamp.Signed.Expires)
	}
	if t.Snapshot != nil {
		add("snapshot", t.Snapshot.Signed.Version, t.Snapshot.Signed.Expires)
	}
	if t.Targets != nil {
		add("targets", t.Targets.Signed.Version, t.Targets.Signed.Expires)
		names := t.DelegatedNames()
		sort.Strings(names)
		for _, n := range names {
			d := t.Delegated(n)
			if d == nil {
				continue
			}
			ri := RoleInfo{Role: n, Version: d.Signed.Version, Expires: d.Signed.Expires}
			if t.Targets.Signed.Delegations != nil {
				for _, r := range t.Targets.Signed.Delegations.Roles {
					if r.Name == n {
						ri.Threshold, ri.Keys = r.Threshold, len(r.KeyIDs)
					}
				}
			}
			out = append(out, ri)
		}
	}
	return out
}
