package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// Deployment environments and approval thresholds.
const (
	EnvDev     = release.EnvDev
	EnvStaging = release.EnvStaging
	EnvProd    = release.EnvProd
	// DefaultProdApprovals is Config.ProdApprovals when zero.
	DefaultProdApprovals = 2
	// MaxProdApprovals bounds Config.ProdApprovals.
	MaxProdApprovals = 20
	// MaxServedMetadataSize bounds each repository metadata file the server
	// reads to check that a release exists.
	MaxServedMetadataSize = 32 << 20
)

// Environments lists the deployment environments.
var Environments = release.Environments

// ErrReleaseNotPublished: the release is not in the served repository.
var ErrReleaseNotPublished = errors.New("release is not published in the served repository")

func (s *Server) governanceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/releases", s.auth.Admin(ActionReleaseRead, s.handleListReleases))
	mux.HandleFunc("GET /api/v1/admin/releases/{id}", s.auth.Admin(ActionReleaseRead, s.handleGetRelease))
	mux.HandleFunc("POST /api/v1/admin/releases", s.auth.Admin(ActionReleaseRegister, s.handleCreateRelease))
	mux.HandleFunc("POST /api/v1/admin/releases/{id}/approve", s.auth.Admin(ActionReleaseApprove, s.handleApproveRelease))
	mux.HandleFunc("POST /api/v1/admin/releases/{id}/deploy", s.auth.Admin(ActionReleaseDeploy, s.handleDeployRelease))
	mux.HandleFunc("GET /api/v1/admin/users", s.auth.Admin(ActionUserRead, s.handleListUsers))
	mux.HandleFunc("POST /api/v1/admin/users", s.auth.Admin(ActionUserWrite, s.handleCreateUser))
	mux.HandleFunc("POST /api/v1/admin/users/{id}/tokens", s.auth.Admin(ActionUserWrite, s.handleCreateUserToken))
	mux.HandleFunc("POST /api/v1/admin/users/{id}/disable", s.auth.Admin(ActionUserWrite, s.handleDisableUser))
}

// requiredApprovals is how many approvals a release for env needs.
func (s *Server) requiredApprovals(env string) int {
	if env == EnvProd {
		return s.cfg.ProdApprovals
	}
	return 0
}

// readServedMetadata reads a file of REPO/public/metadata, bounded.
func (s *Server) readServedMetadata(name string) ([]byte, error) {
	f, err := s.metaRoot.Open(name)
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
func (s *Server) findPublished(p release.Product, v release.Version) (string, error) {
	data, err := s.readServedMetadata("timestamp.json")
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
	data, err = s.readServedMetadata(fmt.Sprintf("%d.snapshot.json", snapMeta.Version))
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
	data, err = s.readServedMetadata(fmt.Sprintf("%d.%s.json", roleMeta.Version, role))
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

func (s *Server) releaseJSON(r store.Release) Release {
	out := Release{
		ID: r.ID, Product: r.Product, Version: r.Version, Environment: r.Environment, TargetPath: r.TargetPath,
		Uploader: r.Uploader, CreatedAt: r.CreatedAt, Approvals: make([]Approval, 0, len(r.Approvals)),
		ActiveApprovals: r.ActiveApprovals(), RequiredApprovals: s.requiredApprovals(r.Environment),
		DeployedBy: r.DeployedBy,
	}
	for _, a := range r.Approvals {
		out.Approvals = append(out.Approvals, Approval{Approver: a.Approver, ApprovedAt: a.ApprovedAt, ApproverDisabled: a.ApproverDisabled})
	}
	if !r.DeployedAt.IsZero() {
		t := r.DeployedAt
		out.DeployedAt = &t
	}
	return out
}

func (s *Server) handleListReleases(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "limit"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	limit, err := httpx.IntParam(r, "limit", store.MaxListLimit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	rels, err := s.db.ListReleases(r.Context(), limit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := ReleaseList{Releases: make([]Release, 0, len(rels))}
	for _, rel := range rels {
		out.Releases = append(out.Releases, s.releaseJSON(rel))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetRelease(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	rel, err := s.db.GetRelease(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "release"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s.releaseJSON(rel))
}

func (s *Server) handleCreateRelease(w http.ResponseWriter, r *http.Request) {
	var req CreateReleaseRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
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
	if !slices.Contains(Environments, req.Environment) {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "environment must be one of %q", Environments))
		return
	}
	tp, err := s.findPublished(p, v)
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
		TargetPath: tp, Uploader: u.ID, CreatedAt: s.now().UTC()}
	if err := s.db.CreateRelease(r.Context(), rel); err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	s.audit(r.Context(), u.Name, AuditReleaseAdded, map[string]string{
		"release_id": id, "release": rel.Product + "@" + rel.Version, "environment": rel.Environment})
	httpx.WriteJSON(w, http.StatusCreated, s.releaseJSON(rel))
}

func (s *Server) handleApproveRelease(w http.ResponseWriter, r *http.Request) {
	if err := httpx.ReadEmpty(w, r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u := auth.UserFrom(r)
	rel, err := s.db.ApproveRelease(r.Context(), r.PathValue("id"), u.ID, s.now())
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
	s.audit(r.Context(), u.Name, AuditReleaseApproved, map[string]string{
		"release_id": rel.ID, "release": rel.Product + "@" + rel.Version, "environment": rel.Environment,
		"approvals": fmt.Sprint(rel.ActiveApprovals())})
	httpx.WriteJSON(w, http.StatusOK, s.releaseJSON(rel))
}

func (s *Server) handleDeployRelease(w http.ResponseWriter, r *http.Request) {
	if err := httpx.ReadEmpty(w, r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u := auth.UserFrom(r)
	id := r.PathValue("id")
	cur, err := s.db.GetRelease(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "release"))
		return
	}
	need := s.requiredApprovals(cur.Environment)
	rel, err := s.db.DeployRelease(r.Context(), id, u.ID, need, s.now())
	if errors.Is(err, store.ErrNotEnoughApprovals) {
		httpx.WriteError(w, r, httpx.Status(http.StatusConflict, "release for %s needs %d approvals from distinct approvers before deployment: %w", cur.Environment, need, err))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	s.audit(r.Context(), u.Name, AuditReleaseDeployed, map[string]string{
		"release_id": rel.ID, "release": rel.Product + "@" + rel.Version, "environment": rel.Environment,
		"approvals": fmt.Sprint(rel.ActiveApprovals())})
	httpx.WriteJSON(w, http.StatusOK, s.releaseJSON(rel))
}
