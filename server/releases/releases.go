// Package releases is the server's release registry: an operator registers
// a release published in the served image repository for an environment,
// approvers approve it, and it is deployed (directly or by starting a
// rollout). It serves the release part of the admin API.
//
// # Threat model
//
// Trusted: the store and the caller's authentication (server/auth: every
// handler runs behind the role table and a fresh TOTP code). The served
// repository's metadata is read, bounded (MaxServedMetadataSize), only to
// check that a registered release was published; its signatures are not
// checked here because devices verify them, so a tampered repository can at
// worst make the registry accept or refuse a name, never make a device
// install it. Governance: a release for production is deployable only
// after RequiredApprovals distinct approvers other than its uploader
// approved it; an uploader cannot approve their own release and an approval
// counts once per user (both enforced by the store, in one transaction).
// Every change is audited.
package releases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// Approval thresholds and limits.
const (
	// DefaultProdApprovals is Config.ProdApprovals when zero.
	DefaultProdApprovals = 2
	// MaxProdApprovals bounds Config.ProdApprovals.
	MaxProdApprovals = 20
	// MaxServedMetadataSize bounds each repository metadata file the server
	// reads to check that a release exists.
	MaxServedMetadataSize = 32 << 20
)

// ErrReleaseNotPublished: the release is not in the served repository.
var ErrReleaseNotPublished = errors.New("release is not published in the served repository")

// Config configures a Registry.
type Config struct {
	// DB holds the releases and approvals. Required.
	DB store.Store
	// Metadata is the served repository's metadata directory
	// (REPO/public/metadata). Required.
	Metadata fs.FS
	// ProdApprovals is how many approvals a release for production needs:
	// 1..MaxProdApprovals; zero means DefaultProdApprovals.
	ProdApprovals int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Audit, when set, receives release events (auth.AuditRelease*).
	Audit func(ctx context.Context, actor, action string, details map[string]string)
}

// ErrConfig: the Config failed a check.
var ErrConfig = errors.New("invalid release registry configuration")

// Registry is the release registry and its admin API handlers.
type Registry struct {
	db            store.Store
	meta          fs.FS
	prodApprovals int
	now           func() time.Time
	auditFn       func(ctx context.Context, actor, action string, details map[string]string)
}

// New checks cfg and returns a Registry.
func New(cfg Config) (*Registry, error) {
	if cfg.ProdApprovals == 0 {
		cfg.ProdApprovals = DefaultProdApprovals
	}
	if cfg.ProdApprovals < 1 || cfg.ProdApprovals > MaxProdApprovals {
		return nil, fmt.Errorf("%w: prod approvals %d outside 1..%d", ErrConfig, cfg.ProdApprovals, MaxProdApprovals)
	}
	g := &Registry{db: cfg.DB, meta: cfg.Metadata, prodApprovals: cfg.ProdApprovals, now: cfg.Now, auditFn: cfg.Audit}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

func (g *Registry) audit(ctx context.Context, actor, action string, details map[string]string) {
	if g.auditFn != nil {
		g.auditFn(ctx, actor, action, details)
	}
}

// RequiredApprovals is how many approvals a release for env needs.
func (g *Registry) RequiredApprovals(env string) int {
	if env == release.EnvProd {
		return g.prodApprovals
	}
	return 0
}

// readServedMetadata reads a file of REPO/public/metadata, bounded.
func (g *Registry) readServedMetadata(name string) ([]byte, error) {
	f, err := g.meta.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrReleaseNotPublished, name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxServedMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", name, err)
	}
	if len(data) > MaxServedMetadataSize {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes (MaxServedMetadataSize)", ErrReleaseNotPublished, name, MaxServedMetadataSize)
	}
	return data, nil
}

// findPublished returns the target path of product@version in the product
// role's newest published targets metadata, following timestamp.json to
// the snapshot and the snapshot to the role version. Signatures are not
// checked here: devices verify them; this only keeps operators from
// deploying what was never published.
func (g *Registry) findPublished(p release.Product, v release.Version) (string, error) {
	data, err := g.readServedMetadata("timestamp.json")
	if err != nil {
		return "", err
	}
	ts, err := metadata.Timestamp().FromBytes(data)
	if err != nil {
		return "", fmt.Errorf("%w: timestamp.json: %w", ErrReleaseNotPublished, err)
	}
	snapMeta, ok := ts.Signed.Meta["snapshot.json"]
	if !ok || snapMeta == nil {
		return "", fmt.Errorf("%w: timestamp.json names no snapshot", ErrReleaseNotPublished)
	}
	data, err = g.readServedMetadata(fmt.Sprintf("%d.snapshot.json", snapMeta.Version))
	if err != nil {
		return "", err
	}
	snap, err := metadata.Snapshot().FromBytes(data)
	if err != nil {
		return "", fmt.Errorf("%w: snapshot: %w", ErrReleaseNotPublished, err)
	}
	role := p.RoleName()
	roleMeta, ok := snap.Signed.Meta[role+".json"]
	if !ok || roleMeta == nil {
		return "", fmt.Errorf("%w: product %q has no role in the snapshot", ErrReleaseNotPublished, p.String())
	}
	data, err = g.readServedMetadata(fmt.Sprintf("%d.%s.json", roleMeta.Version, role))
	if err != nil {
		return "", err
	}
	tgts, err := metadata.Targets().FromBytes(data)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrReleaseNotPublished, role, err)
	}
	var paths []string
	for tp := range tgts.Signed.Targets {
		tprod, tv, _, err := release.ParseTargetPath(tp)
		if err == nil && tprod.String() == p.String() && tv.String() == v.String() {
			paths = append(paths, tp)
		}
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("%w: no target for %s@%s in %s version %d", ErrReleaseNotPublished, p.String(), v.String(), role, roleMeta.Version)
	}
	slices.Sort(paths)
	return paths[0], nil
}

// View returns the admin API's view of a release.
func (g *Registry) View(r store.Release) adminapi.Release {
	out := adminapi.Release{
		ID: r.ID, Product: r.Product, Version: r.Version, Environment: r.Environment, TargetPath: r.TargetPath,
		Uploader: r.Uploader, CreatedAt: r.CreatedAt, Approvals: make([]adminapi.Approval, 0, len(r.Approvals)),
		ActiveApprovals: r.ActiveApprovals(), RequiredApprovals: g.RequiredApprovals(r.Environment),
		DeployedBy: r.DeployedBy,
	}
	for _, a := range r.Approvals {
		out.Approvals = append(out.Approvals, adminapi.Approval{Approver: a.Approver, ApprovedAt: a.ApprovedAt, ApproverDisabled: a.ApproverDisabled})
	}
	if !r.DeployedAt.IsZero() {
		t := r.DeployedAt
		out.DeployedAt = &t
	}
	return out
}

// HandleList serves GET /api/v1/admin/releases.
func (g *Registry) HandleList(w http.ResponseWriter, r *http.Request) {
	limit, err := httpx.ListLimit(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	rels, err := g.db.ListReleases(r.Context(), limit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := adminapi.ReleaseList{Releases: make([]adminapi.Release, 0, len(rels))}
	for _, rel := range rels {
		out.Releases = append(out.Releases, g.View(rel))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// HandleGet serves GET /api/v1/admin/releases/{id}.
func (g *Registry) HandleGet(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	rel, err := g.db.GetRelease(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "release"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, g.View(rel))
}

// HandleCreate serves POST /api/v1/admin/releases.
func (g *Registry) HandleCreate(w http.ResponseWriter, r *http.Request) {
	var req adminapi.CreateReleaseRequest
	if err := httpx.ReadJSON(w, r, httpx.MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	p, err := release.ParseProduct(req.Product)
	if err != nil {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "product: %w", err))
		return
	}
	v, err := release.ParseVersion(req.Version)
	if err != nil {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "version: %w", err))
		return
	}
	if !slices.Contains(release.Environments, req.Environment) {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "environment must be one of %q", release.Environments))
		return
	}
	tp, err := g.findPublished(p, v)
	if errors.Is(err, ErrReleaseNotPublished) {
		httpx.WriteError(w, r, httpx.Status(http.StatusUnprocessableEntity, "%w", err))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	id, err := auth.RandomID("rel-")
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u := auth.UserFrom(r)
	rel := store.Release{ID: id, Product: p.String(), Version: v.String(), Environment: req.Environment,
		TargetPath: tp, Uploader: u.ID, CreatedAt: g.now().UTC()}
	ctx := store.WithAudit(r.Context()) // the event commits with the release
	g.audit(ctx, u.Name, auth.AuditReleaseAdded, map[string]string{
		"release_id": id, "release": rel.Product + "@" + rel.Version, "environment": rel.Environment})
	if err := g.db.CreateRelease(ctx, rel); err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, g.View(rel))
}

// HandleApprove serves POST /api/v1/admin/releases/{id}/approve.
func (g *Registry) HandleApprove(w http.ResponseWriter, r *http.Request) {
	if err := httpx.ReadEmpty(w, r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	rel, err := g.Approve(r.Context(), auth.UserFrom(r), r.PathValue("id"), "")
	switch {
	case errors.Is(err, store.ErrSelfApproval):
		httpx.WriteError(w, r, httpx.Status(http.StatusForbidden, "the uploader of a release cannot approve it"))
		return
	case errors.Is(err, store.ErrExists):
		httpx.WriteError(w, r, httpx.Status(http.StatusConflict, "you already approved this release; approvals count distinct users"))
		return
	case err != nil:
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, g.View(rel))
}

// HandleDeploy serves POST /api/v1/admin/releases/{id}/deploy.
func (g *Registry) HandleDeploy(w http.ResponseWriter, r *http.Request) {
	if err := httpx.ReadEmpty(w, r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u := auth.UserFrom(r)
	id := r.PathValue("id")
	cur, err := g.db.GetRelease(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "release"))
		return
	}
	need := g.RequiredApprovals(cur.Environment)
	ctx := store.WithAudit(r.Context()) // the event commits with the deployment
	g.audit(ctx, u.Name, auth.AuditReleaseDeployed, map[string]string{
		"release_id": cur.ID, "release": cur.Product + "@" + cur.Version, "environment": cur.Environment,
		"approvals": fmt.Sprint(cur.ActiveApprovals())})
	rel, err := g.db.DeployRelease(ctx, id, u.ID, need, g.now())
	if errors.Is(err, store.ErrNotEnoughApprovals) {
		httpx.WriteError(w, r, httpx.Status(http.StatusConflict, "release for %s needs %d approvals from distinct approvers before deployment: %w", cur.Environment, need, err))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, g.View(rel))
}

// Approve records actor's approval of release id and audits it; via, when
// not "", names the interface in the audit record ("dashboard"). The store
// refuses the uploader's own approval (store.ErrSelfApproval) and a second
// approval by the same user (store.ErrExists).
func (g *Registry) Approve(ctx context.Context, actor store.User, id, via string) (store.Release, error) {
	cur, err := g.db.GetRelease(ctx, id)
	if err != nil {
		return store.Release{}, err
	}
	// The event commits with the approval; approvals counts it.
	details := map[string]string{"release_id": cur.ID, "release": cur.Product + "@" + cur.Version,
		"environment": cur.Environment, "approvals": fmt.Sprint(cur.ActiveApprovals() + 1)}
	if via != "" {
		details["via"] = via
	}
	actx := store.WithAudit(ctx)
	g.audit(actx, actor.Name, auth.AuditReleaseApproved, details)
	return g.db.ApproveRelease(actx, id, actor.ID, g.now())
}
