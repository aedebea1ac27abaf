package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// internalError logs err and shows a generic error page.
func (d *dashboard) internalError(w http.ResponseWriter, r *http.Request, pd *pageData, err error) {
	if info := httpx.InfoFrom(r); info != nil {
		info.Err = err
	}
	code, msg := http.StatusInternalServerError, "internal error"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		code, msg = http.StatusServiceUnavailable, "request cancelled"
	}
	d.renderError(w, r, pd, code, msg)
}

// userMessage is what a form's failure shows: the message of an httpx.Error
// (written for users), else "internal error".
func userMessage(err error) string {
	var he *httpx.Error
	if errors.As(err, &he) {
		return he.Error()
	}
	return "internal error"
}

// overviewPage is the body of the overview.
type overviewPage struct {
	Stats    store.Stats
	Products []productVersions
	States   []countBar
	Rollouts []dashRollout // active ones
}

// productVersions is one bar chart: a product's devices by version.
type productVersions struct {
	Product string
	Total   int
	Bars    []countBar
}

// countBar is one labelled bar; Pct is its share of the largest bar.
type countBar struct {
	Label   string
	Count   int
	Pct     int
	AtLeast bool // the count was capped at StateCountLimit
}

func bars(counts map[string]int) ([]countBar, int) {
	out := make([]countBar, 0, len(counts))
	total, top := 0, 0
	for k, n := range counts {
		label := k
		if label == "" {
			label = "(unknown)"
		}
		out = append(out, countBar{Label: label, Count: n})
		total += n
		top = max(top, n)
	}
	slices.SortFunc(out, func(a, b countBar) int {
		va, ea := release.ParseVersion(a.Label)
		vb, eb := release.ParseVersion(b.Label)
		if ea == nil && eb == nil {
			return -release.Compare(va, vb)
		}
		return cmp.Compare(a.Label, b.Label)
	})
	for i := range out {
		if top > 0 {
			out[i].Pct = max(1, out[i].Count*100/top)
		}
	}
	return out, total
}

func (d *dashboard) handleOverview(w http.ResponseWriter, r *http.Request, pd *pageData) {
	ctx := r.Context()
	pd.Title, pd.Nav = "Fleet", "overview"
	var body overviewPage
	var err error
	if body.Stats, err = d.db.Stats(ctx); err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	rels, err := d.db.ListReleases(ctx, store.MaxListLimit)
	if err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	var products []string
	for _, rel := range rels {
		if !slices.Contains(products, rel.Product) {
			products = append(products, rel.Product)
		}
	}
	slices.Sort(products)
	products = append(products, "") // every product together
	for _, p := range products {
		vers, err := d.db.CountDevicesByVersion(ctx, p)
		if err != nil {
			d.internalError(w, r, pd, err)
			return
		}
		if len(vers) == 0 {
			continue
		}
		pv := productVersions{Product: p}
		if p == "" {
			pv.Product = "all products"
		}
		pv.Bars, pv.Total = bars(vers)
		body.Products = append(body.Products, pv)
	}
	states := map[string]int{}
	capped := map[string]bool{}
	for _, st := range deviceapi.States() {
		devs, err := d.db.ListDevices(ctx, store.DeviceFilter{State: st, Limit: StateCountLimit})
		if err != nil {
			d.internalError(w, r, pd, err)
			return
		}
		if len(devs) > 0 {
			states[st] = len(devs)
			capped[st] = len(devs) == StateCountLimit
		}
	}
	body.States, _ = bars(states)
	for i := range body.States {
		body.States[i].AtLeast = capped[body.States[i].Label]
	}
	slices.SortFunc(body.States, func(a, b countBar) int { return cmp.Compare(b.Count, a.Count) })
	if d.rollouts != nil {
		all, err := d.rollouts.list(ctx, ListLimit)
		if err != nil {
			d.internalError(w, r, pd, err)
			return
		}
		for _, ro := range all {
			if ro.State.Active() {
				body.Rollouts = append(body.Rollouts, ro)
			}
		}
	}
	pd.Body = body
	d.render(w, r, http.StatusOK, "overview", pd)
}

// releasesPage is the body of the releases list.
type releasesPage struct {
	Releases []releaseRow
}

type releaseRow struct {
	adminapi.Release
	UploaderName string
}

// userNames resolves user IDs to names for display, once per page.
type userNames struct {
	ctx   context.Context
	db    store.Store
	cache map[string]string
}

func (n *userNames) name(id string) string {
	if id == "" {
		return ""
	}
	if v, ok := n.cache[id]; ok {
		return v
	}
	v := id
	if u, err := n.db.GetUser(n.ctx, id); err == nil {
		v = u.Name
	}
	n.cache[id] = v
	return v
}

func (d *dashboard) names(ctx context.Context) *userNames {
	return &userNames{ctx: ctx, db: d.db, cache: map[string]string{}}
}

func (d *dashboard) handleReleases(w http.ResponseWriter, r *http.Request, pd *pageData) {
	pd.Title, pd.Nav = "Releases", "releases"
	rels, err := d.db.ListReleases(r.Context(), ListLimit)
	if err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	n := d.names(r.Context())
	var body releasesPage
	for _, rel := range rels {
		body.Releases = append(body.Releases, releaseRow{Release: d.releases.View(rel), UploaderName: n.name(rel.Uploader)})
	}
	pd.Body = body
	d.render(w, r, http.StatusOK, "releases", pd)
}

// releasePage is the body of a release's page: its approvals and its
// audit trail.
type releasePage struct {
	Rel            adminapi.Release
	Name           string // "product@version"
	UploaderName   string
	DeployedByName string
	Approvals      []approvalRow
	CanApprove     bool // the release still takes approvals
	// Audit is the release's audit trail from the audit log; nil without
	// one (AuditError says why when reading it failed).
	Audit      *audit.ReleaseSummary
	AuditError string
	// From the store: devices that run this release, and devices of the
	// product whose last install of it rolled back or failed.
	Running    []store.Device
	RunningMax bool
	RolledBack []store.Device
	Failed     []store.Device
	Rollouts   []dashRollout
	// Provenance of the published release (nil: none, or not read;
	// ProvenanceError says why when reading it failed).
	Provenance      *Provenance
	ProvenanceError string
	ProvenanceShown bool // the server reads provenance (Config.Provenance)
}

type approvalRow struct {
	Name     string
	Approval adminapi.Approval
}

func (d *dashboard) handleRelease(w http.ResponseWriter, r *http.Request, pd *pageData) {
	ctx := r.Context()
	pd.Nav = "releases"
	rel, err := d.db.GetRelease(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		d.renderError(w, r, pd, http.StatusNotFound, "no such release")
		return
	}
	if err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	n := d.names(ctx)
	body := releasePage{Rel: d.releases.View(rel), Name: rel.Product + "@" + rel.Version,
		UploaderName: n.name(rel.Uploader), DeployedByName: n.name(rel.DeployedBy),
		CanApprove: rel.DeployedAt.IsZero()}
	for _, a := range body.Rel.Approvals {
		body.Approvals = append(body.Approvals, approvalRow{Name: n.name(a.Approver), Approval: a})
	}
	if d.prov != nil {
		body.ProvenanceShown = true
		if body.Provenance, err = d.prov(ctx, rel.Product, rel.Version); err != nil {
			body.ProvenanceError = err.Error()
		}
	}
	if dir := d.auditDir; dir != "" {
		entries, err := audit.Query(dir, audit.Filter{Release: body.Name})
		if err != nil {
			body.AuditError = err.Error()
		} else {
			body.Audit = audit.Summarize(body.Name, entries)
		}
	}
	body.Running, err = d.db.ListDevices(ctx, store.DeviceFilter{Product: rel.Product, Version: rel.Version, Limit: ListLimit})
	if err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	body.RunningMax = len(body.Running) == ListLimit
	if body.RolledBack, err = d.devicesWithOutcome(ctx, rel, deviceapi.StateRolledBack); err == nil {
		body.Failed, err = d.devicesWithOutcome(ctx, rel, deviceapi.StateFailed)
	}
	if err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	if d.rollouts != nil {
		all, err := d.rollouts.list(ctx, ListLimit)
		if err != nil {
			d.internalError(w, r, pd, err)
			return
		}
		for _, ro := range all {
			if ro.Release == body.Name || ro.ReleaseID == rel.ID {
				body.Rollouts = append(body.Rollouts, ro)
			}
		}
	}
	pd.Title, pd.Body = "Release "+body.Name, body
	d.render(w, r, http.StatusOK, "release", pd)
}

// devicesWithOutcome returns up to ListLimit devices of the
// release's product in state whose latest event of that kind is about
// the release's version.
func (d *dashboard) devicesWithOutcome(ctx context.Context, rel store.Release, state string) ([]store.Device, error) {
	devs, err := d.db.ListDevices(ctx, store.DeviceFilter{Product: rel.Product, State: state, Limit: ListLimit})
	if err != nil {
		return nil, err
	}
	var out []store.Device
	for _, dev := range devs {
		evs, err := d.db.ListEvents(ctx, dev.ID, 10)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.Kind == state {
				if e.Version == rel.Version {
					out = append(out, dev)
				}
				break
			}
		}
	}
	return out, nil
}

// handleApprove approves a release as the session's user, exactly like
// POST /api/v1/admin/releases/{id}/approve (the TOTP code came in the form).
func (d *dashboard) handleApprove(w http.ResponseWriter, r *http.Request, pd *pageData) {
	dr := reqFrom(r)
	id := r.PathValue("id")
	rel, err := d.releases.Approve(r.Context(), dr.user, id, "dashboard")
	var msg string
	switch {
	case err == nil:
		msg = fmt.Sprintf("approved %s@%s (%d approvals)", rel.Product, rel.Version, rel.ActiveApprovals())
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		d.renderError(w, r, pd, http.StatusNotFound, "no such release")
		return
	case errors.Is(err, store.ErrSelfApproval):
		msg = "not approved: the uploader of a release cannot approve it"
	case errors.Is(err, store.ErrExists):
		msg = "not approved: you already approved this release; approvals count distinct users"
	case errors.Is(err, store.ErrConflict):
		msg = "not approved: " + err.Error()
	default:
		d.internalError(w, r, pd, err)
		return
	}
	d.sessions.setFlash(r, dr.sess, msg)
	http.Redirect(w, r, dashboardPrefix+"releases/"+id, http.StatusSeeOther)
}
