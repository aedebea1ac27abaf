// Package verify runs, for anyone holding a trusted root, exactly the checks
// a device runs before it installs a release: TUF signatures and thresholds,
// expiry, version rollback and mix-and-match, delegation paths, payload
// hashes and lengths (transport and installed image), and the firmware
// policy (product, model, hardware revision).
//
// Threat model: everything but the root given in Options is untrusted: the
// bundle or repository may be forged, replayed, truncated or endless. The
// verifier uses the device's own TUF client (package trust) and payload
// checker (internal/payload) with the device's limits, against an in-memory
// copy of the given root, so it never writes anything and cannot be more
// lenient than a device. The payload is streamed and discarded; memory does
// not grow with the image size.
package verify

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Names of the checks, as reported in errors and summaries.
const (
	CheckFormat     = "bundle format"
	CheckMetadata   = "metadata" // signatures, thresholds, expiry, versions, consistency
	CheckTarget     = "target lookup and delegation paths"
	CheckRelease    = "release metadata"
	CheckPolicy     = "device policy"
	CheckPayload    = "payload hashes and lengths"
	CheckSelectable = "release selection"
)

// Error is a failed check. It wraps the underlying error (from trust,
// release, bundle or payload) so callers can test it with errors.Is.
type Error struct {
	Check string
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("check %q failed: %v", e.Check, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Options says what to verify against.
type Options struct {
	// Root is the trusted root metadata (a device's factory root, or any
	// root the verifier already trusts). Required.
	Root []byte
	// Now is the reference time for expiry; zero means time.Now.
	Now time.Time
	// Model and HWRev, when set, are checked like a device of that model and
	// hardware revision would. Product is required for repositories.
	Model   string
	HWRev   *uint32
	Product string
	// Version selects one release of Product in a repository; empty means the
	// newest release that passes the model and hardware checks.
	Version string
	// Channel is the device's channel ("" = stable) for repository selection.
	Channel string
	// HTTPClient is used for repository URLs (nil: default client, TLS 1.2+).
	HTTPClient *http.Client
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
	Compression     string            `json:"compression"`
	InstalledLength int64             `json:"installed_length"`
	InstalledSHA256 string            `json:"installed_sha256"`
	Roles           []RoleInfo        `json:"roles"`
	Checks          []string          `json:"checks"`
}

func (o *Options) now() func() time.Time {
	if o.Now.IsZero() {
		return time.Now
	}
	t := o.Now
	return func() time.Time { return t }
}

func newClient(opts *Options, src trust.Source) (*trust.Client, error) {
	if len(opts.Root) == 0 {
		return nil, errors.New("no trusted root given")
	}
	st := trust.NewMemStore()
	if err := st.Put("root.json", opts.Root); err != nil {
		return nil, err
	}
	c, err := trust.New(st, src, trust.Config{Now: opts.now()})
	if err != nil {
		return nil, &Error{CheckMetadata, err}
	}
	return c, nil
}

// Bundle verifies an offline bundle read from r, including its payload.
func Bundle(ctx context.Context, r io.Reader, opts Options) (*Report, error) {
	br, err := bundle.NewReader(bufio.NewReaderSize(r, 64<<10), bundle.Limits{})
	if err != nil {
		return nil, &Error{CheckFormat, err}
	}
	m := br.Metadata()
	src := &trust.MapSource{Roots: map[int64][]byte{}, Metadata: map[string][]byte{
		"timestamp": m.Timestamp, "snapshot": m.Snapshot, "targets": m.Targets,
	}}
	for _, raw := range m.RootChain {
		v, err := signedVersion(raw)
		if err != nil {
			return nil, &Error{CheckFormat, err}
		}
		src.Roots[v] = raw
	}
	for _, d := range m.Delegated {
		src.Metadata[d.Name] = d.Data
	}
	c, err := newClient(&opts, src)
	if err != nil {
		return nil, err
	}
	if err := c.Refresh(ctx); err != nil {
		return nil, &Error{CheckMetadata, err}
	}
	tf, err := c.Target(ctx, m.TargetPath)
	if err != nil {
		return nil, &Error{CheckTarget, err}
	}
	if tf.Length != m.PayloadLength {
		return nil, &Error{CheckPayload, fmt.Errorf("%w: bundle carries %d payload bytes, the signed target is %d bytes", payload.ErrLength, m.PayloadLength, tf.Length)}
	}
	rep, rel, err := checkRelease(tf, &opts)
	if err != nil {
		return nil, err
	}
	rep.Source = "bundle"
	if err := checkPayload(br.Payload(), tf, rel); err != nil {
		return nil, err
	}
	// The trailer is checked when the payload reader reaches EOF, which
	// checkPayload does not do when the signed length is exact: drain it.
	if _, err := io.Copy(io.Discard, br.Payload()); err != nil {
		return nil, &Error{CheckFormat, err}
	}
	rep.Roles = summarize(c)
	rep.Checks = append(rep.Checks, CheckFormat)
	return rep, nil
}

// Repo verifies the newest (or Options.Version) release of Options.Product in
// a repository: a local repository directory (made by airlock repo init; its
// public/ subdirectory is read) or an http(s) URL of the served public/
// directory.
func Repo(ctx context.Context, location string, opts Options) (*Report, error) {
	if opts.Product == "" {
		return nil, errors.New("a product is required to verify a repository")
	}
	product, err := release.ParseProduct(opts.Product)
	if err != nil {
		return nil, err
	}
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
	c, err := newClient(&opts, src)
	if err != nil {
		return nil, err
	}
	if err := c.Refresh(ctx); err != nil {
		return nil, &Error{CheckMetadata, err}
	}
	path, err := selectRelease(ctx, c, product, &opts)
	if err != nil {
		return nil, err
	}
	tf, err := c.Target(ctx, path)
	if err != nil {
		return nil, &Error{CheckTarget, err}
	}
	rep, rel, err := checkRelease(tf, &opts)
	if err != nil {
		return nil, err
	}
	rep.Source = location
	hashPrefix := ""
	if c.Trusted().Root.Signed.ConsistentSnapshot {
		hashPrefix = hex.EncodeToString(tf.Hashes["sha256"])
	}
	rc, err := src.OpenTarget(ctx, path, hashPrefix)
	if err != nil {
		return nil, &Error{CheckPayload, err}
	}
	defer rc.Close()
	if err := checkPayload(rc, tf, rel); err != nil {
		return nil, err
	}
	rep.Roles = summarize(c)
	return rep, nil
}

// selectRelease picks the target path of the release to verify: the given
// version, or the newest release of the product that fits the device.
func selectRelease(ctx context.Context, c *trust.Client, product release.Product, opts *Options) (string, error) {
	cands, err := Releases(ctx, c, product)
	if err != nil {
		return "", err
	}
	if len(cands) == 0 {
		return "", &Error{CheckSelectable, fmt.Errorf("no release of product %q in the repository", product)}
	}
	var rejected []error
	for _, cand := range cands { // newest first
		if opts.Version != "" {
			if cand.Version.String() == opts.Version {
				return cand.Path, nil
			}
			continue
		}
		if err := fits(cand.Release, opts); err != nil {
			rejected = append(rejected, fmt.Errorf("%s: %w", cand.Version, err))
			continue
		}
		return cand.Path, nil
	}
	if opts.Version != "" {
		return "", &Error{CheckSelectable, fmt.Errorf("product %q has no release %q", product, opts.Version)}
	}
	return "", &Error{CheckPolicy, fmt.Errorf("no release of %q fits this device: %w", product, errors.Join(rejected...))}
}

// Candidate is one release listed by a verified product role.
type Candidate struct {
	Path    string
	Version release.Version
	Release *release.Metadata
}

// Releases lists the releases of product that the trusted metadata lists,
// newest first. Entries whose metadata does not parse are skipped (they can
// never be installed). Each listed path must still be looked up with
// Client.Target before use.
func Releases(ctx context.Context, c *trust.Client, product release.Product) ([]Candidate, error) {
	// A lookup of a path inside the product's namespace makes the client
	// verify the product role through its delegator.
	probe := product.String() + "/0.0.0/probe"
	if _, err := c.Target(ctx, probe); err != nil && !errors.Is(err, trust.ErrTargetNotFound) {
		return nil, &Error{CheckTarget, err}
	}
	role := c.Trusted().Delegated(product.RoleName())
	if role == nil {
		return nil, &Error{CheckSelectable, fmt.Errorf("the repository has no verified role for product %q", product)}
	}
	var out []Candidate
	for path, tf := range role.Signed.Targets {
		p, v, _, err := release.ParseTargetPath(path)
		if err != nil || p != product || tf.Custom == nil {
			continue
		}
		rel, err := release.ParseCustom(*tf.Custom)
		if err != nil {
			continue
		}
		out = append(out, Candidate{Path: path, Version: v, Release: rel})
	}
	sort.Slice(out, func(i, j int) bool { return release.Compare(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

func fits(rel *release.Metadata, opts *Options) error {
	// Only what the caller states about the device is checked: without a
	// model or hardware revision those checks are left out (on a copy).
	r := *rel
	d := release.Device{Model: opts.Model, Product: rel.Product.String(), Channel: opts.Channel}
	if opts.Model == "" {
		d.Model = rel.Models[0]
	}
	if opts.HWRev != nil {
		d.HWRev = *opts.HWRev
	} else {
		r.HWRev = release.HWRange{}
	}
	if opts.Channel == "" {
		d.Channel = rel.ChannelOrDefault()
	}
	// Dependencies are the device's business: a verifier has no installed
	// components to compare, so they are taken as satisfied.
	d.Components = map[string]release.Version{}
	for _, dep := range rel.Depends {
		d.Components[dep.Component] = dep.MinVersion
	}
	return release.Check(&r, d, release.CheckOptions{})
}

func checkRelease(tf *metadata.TargetFiles, opts *Options) (*Report, *release.Metadata, error) {
	if tf.Custom == nil {
		return nil, nil, &Error{CheckRelease, errors.New("target has no Airlock release metadata in its custom field")}
	}
	rel, err := release.ParseCustom(*tf.Custom)
	if err != nil {
		return nil, nil, &Error{CheckRelease, err}
	}
	if err := release.CheckTargetPath(rel, tf.Path); err != nil {
		return nil, nil, &Error{CheckRelease, err}
	}
	if opts.Product != "" && rel.Product.String() != opts.Product {
		return nil, nil, &Error{CheckPolicy, &release.PolicyError{Check: release.CheckProduct, Msg: fmt.Sprintf("release is for product %q, expected %q", rel.Product, opts.Product)}}
	}
	checks := []string{CheckMetadata, CheckTarget, CheckRelease}
	if opts.Model != "" || opts.HWRev != nil {
		if err := fits(rel, opts); err != nil {
			return nil, nil, &Error{CheckPolicy, err}
		}
		checks = append(checks, CheckPolicy)
	}
	rep := &Report{
		TargetPath:      tf.Path,
		Length:          tf.Length,
		SHA256:          hex.EncodeToString(tf.Hashes["sha256"]),
		Release:         rel,
		Product:         rel.Product.String(),
		Version:         rel.Version.String(),
		SecurityVersion: rel.SecurityVersion,
		Models:          rel.Models,
		HWRev:           rel.HWRev.String(),
		Channel:         rel.ChannelOrDefault(),
		Compression:     string(rel.Install.Compression),
		InstalledLength: rel.Installed.Length,
		InstalledSHA256: hex.EncodeToString(rel.Installed.SHA256[:]),
		Checks:          checks,
	}
	return rep, rel, nil
}

// Expect converts signed target and release metadata into what the payload
// checker verifies.
func Expect(tf *metadata.TargetFiles, rel *release.Metadata) (payload.Expect, error) {
	ih := rel.Installed.SHA256
	hashes := map[string][]byte{}
	for alg, h := range tf.Hashes {
		hashes[alg] = h
	}
	return payload.Expect{
		Length:          tf.Length,
		Hashes:          hashes,
		Compression:     string(rel.Install.Compression),
		InstalledLength: rel.Installed.Length,
		InstalledSHA256: ih[:],
	}, nil
}

func checkPayload(r io.Reader, tf *metadata.TargetFiles, rel *release.Metadata) error {
	exp, err := Expect(tf, rel)
	if err != nil {
		return &Error{CheckRelease, err}
	}
	if _, err := payload.Copy(io.Discard, r, exp); err != nil {
		return &Error{CheckPayload, err}
	}
	return nil
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

// signedVersion reads signed.version of a metadata file (the bundle reader
// has already checked that it parses); the TUF client verifies it.
func signedVersion(raw []byte) (int64, error) {
	md, err := (&metadata.Metadata[metadata.RootType]{}).FromBytes(raw)
	if err != nil {
		return 0, fmt.Errorf("root chain entry: %w", err)
	}
	return md.Signed.Version, nil
}
