package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Release is a published firmware release registered for deployment to one
// environment, with the approvals it collected.
type Release struct {
	ID          string // server-assigned; [A-Za-z0-9._-]
	Product     string // required
	Version     string // required
	Environment string // [a-z0-9_-], e.g. "dev", "staging", "prod"
	TargetPath  string // the TUF target path found in the repository
	Uploader    string // user ID of whoever registered it, required
	CreatedAt   time.Time
	DeployedAt  time.Time  // zero until DeployRelease
	DeployedBy  string     // user ID, empty until DeployRelease
	Approvals   []Approval // oldest first; must be empty at CreateRelease
}

// Approval is one user's approval of a release.
type Approval struct {
	Approver   string // user ID
	ApprovedAt time.Time
	// ApproverDisabled: the approver was disabled since; the approval no
	// longer counts toward DeployRelease's threshold.
	ApproverDisabled bool
}

// ActiveApprovals counts the approvals from users who are not disabled.
func (r Release) ActiveApprovals() int {
	n := 0
	for _, a := range r.Approvals {
		if !a.ApproverDisabled {
			n++
		}
	}
	return n
}

func validateRelease(r Release) error {
	if err := checkID("release id", r.ID); err != nil {
		return err
	}
	if err := checkString("release product", r.Product, true); err != nil {
		return err
	}
	if err := checkString("release version", r.Version, true); err != nil {
		return err
	}
	if err := checkWord("release environment", r.Environment); err != nil {
		return err
	}
	if err := checkString("release target path", r.TargetPath, true); err != nil {
		return err
	}
	if err := checkID("release uploader", r.Uploader); err != nil {
		return err
	}
	if err := checkTime("release created at", r.CreatedAt); err != nil {
		return err
	}
	if !r.DeployedAt.IsZero() || r.DeployedBy != "" || len(r.Approvals) != 0 {
		return invalid("release", "deployment and approvals are recorded by DeployRelease and ApproveRelease")
	}
	return nil
}

const releaseColumns = `id, product, version, environment, target_path, uploader, created_at, deployed_at, deployed_by`

func scanRelease(r row) (Release, error) {
	var rel Release
	var created int64
	var deployed sql.NullInt64
	var by sql.NullString
	if err := r.Scan(&rel.ID, &rel.Product, &rel.Version, &rel.Environment, &rel.TargetPath, &rel.Uploader,
		&created, &deployed, &by); err != nil {
		return Release{}, err
	}
	rel.CreatedAt, rel.DeployedAt, rel.DeployedBy = fromDBTime(created), fromDBOptTime(deployed), by.String
	return rel, nil
}

func (s *sqlStore) CreateRelease(ctx context.Context, r Release) error {
	if err := validateRelease(r); err != nil {
		return err
	}
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, r.Uploader); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO releases (`+releaseColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)`,
			r.ID, r.Product, r.Version, r.Environment, r.TargetPath, r.Uploader, dbTime(r.CreatedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to create release %s@%s (%s): %w", r.Product, r.Version, r.Environment, s.mapErr(err))
	}
	return nil
}

// loadApprovals fills in the approvals of rels.
func loadApprovals(ctx context.Context, q querier, rel *Release) error {
	rs, err := q.query(ctx, `SELECT a.approver, a.approved_at, u.disabled_at IS NOT NULL
		FROM release_approvals a JOIN users u ON u.id = a.approver
		WHERE a.release_id = $1 ORDER BY a.approved_at, a.approver`, rel.ID)
	if err != nil {
		return err
	}
	defer rs.Close()
	rel.Approvals = nil
	for rs.Next() {
		var a Approval
		var at int64
		if err := rs.Scan(&a.Approver, &at, &a.ApproverDisabled); err != nil {
			return err
		}
		a.ApprovedAt = fromDBTime(at)
		rel.Approvals = append(rel.Approvals, a)
	}
	return rs.Err()
}

func getRelease(ctx context.Context, q querier, id string) (Release, error) {
	rel, err := scanRelease(q.queryRow(ctx, `SELECT `+releaseColumns+` FROM releases WHERE id = $1`, id))
	if isNoRows(err) {
		return Release{}, fmt.Errorf("release %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Release{}, err
	}
	if err := loadApprovals(ctx, q, &rel); err != nil {
		return Release{}, err
	}
	return rel, nil
}

func (s *sqlStore) GetRelease(ctx context.Context, id string) (Release, error) {
	if err := checkID("release id", id); err != nil {
		return Release{}, err
	}
	rel, err := getRelease(ctx, s.b.reader(), id)
	if err != nil {
		return Release{}, fmt.Errorf("failed to get release: %w", err)
	}
	return rel, nil
}

func (s *sqlStore) ListReleases(ctx context.Context, limit int) ([]Release, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	rs, err := s.b.reader().query(ctx, `SELECT `+releaseColumns+` FROM releases
		ORDER BY created_at DESC, id LIMIT $1`, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("failed to list releases: %w", err)
	}
	var out []Release
	for rs.Next() {
		rel, err := scanRelease(rs)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("failed to list releases: %w", err)
		}
		out = append(out, rel)
	}
	err = rs.Err()
	rs.Close()
	if err != nil {
		return nil, fmt.Errorf("failed to list releases: %w", err)
	}
	for i := range out {
		if err := loadApprovals(ctx, s.b.reader(), &out[i]); err != nil {
			return nil, fmt.Errorf("failed to list releases: %w", err)
		}
	}
	return out, nil
}

func (s *sqlStore) ApproveRelease(ctx context.Context, id, approver string, now time.Time) (Release, error) {
	if err := checkID("release id", id); err != nil {
		return Release{}, err
	}
	if err := checkID("approver", approver); err != nil {
		return Release{}, err
	}
	if err := checkTime("now", now); err != nil {
		return Release{}, err
	}
	var out Release
	err := s.b.inTx(ctx, func(q querier) error {
		rel, err := getRelease(ctx, q, id)
		if err != nil {
			return err
		}
		if err := userExists(ctx, q, approver); err != nil {
			return err
		}
		switch {
		case rel.Uploader == approver:
			return ErrSelfApproval
		case !rel.DeployedAt.IsZero():
			return ErrAlreadyDeployed
		case len(rel.Approvals) >= MaxApprovals:
			return fmt.Errorf("%w: release has %d approvals, the limit", ErrConflict, MaxApprovals)
		}
		for _, a := range rel.Approvals {
			if a.Approver == approver {
				return fmt.Errorf("%w: user %q already approved this release", ErrExists, approver)
			}
		}
		// The primary key (release_id, approver) also refuses a concurrent duplicate.
		if _, err := q.exec(ctx, `INSERT INTO release_approvals (release_id, approver, approved_at) VALUES ($1, $2, $3)`,
			id, approver, dbTime(now)); err != nil {
			return err
		}
		out, err = getRelease(ctx, q, id)
		return err
	})
	if err != nil {
		return Release{}, fmt.Errorf("failed to approve release %q: %w", id, s.mapErr(err))
	}
	return out, nil
}

func (s *sqlStore) DeployRelease(ctx context.Context, id, by string, minApprovals int, now time.Time) (Release, error) {
	if err := checkID("release id", id); err != nil {
		return Release{}, err
	}
	if err := checkID("deployer", by); err != nil {
		return Release{}, err
	}
	if minApprovals < 0 || minApprovals > MaxApprovals {
		return Release{}, invalid("min approvals", "%d outside 0..%d", minApprovals, MaxApprovals)
	}
	if err := checkTime("now", now); err != nil {
		return Release{}, err
	}
	var out Release
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, by); err != nil {
			return err
		}
		// One statement decides: the count and the update see the same rows.
		n, err := q.exec(ctx, `UPDATE releases SET deployed_at = $1, deployed_by = $2
			WHERE id = $3 AND deployed_at IS NULL AND (
				SELECT COUNT(*) FROM release_approvals a JOIN users u ON u.id = a.approver
				WHERE a.release_id = $3 AND u.disabled_at IS NULL) >= $4`,
			dbTime(now), by, id, int64(minApprovals))
		if err != nil {
			return err
		}
		rel, err := getRelease(ctx, q, id)
		if err != nil {
			return err
		}
		if n == 0 {
			if !rel.DeployedAt.IsZero() {
				return ErrAlreadyDeployed
			}
			return fmt.Errorf("%w: %d of %d", ErrNotEnoughApprovals, rel.ActiveApprovals(), minApprovals)
		}
		out = rel
		return nil
	})
	if err != nil {
		return Release{}, fmt.Errorf("failed to deploy release %q: %w", id, s.mapErr(err))
	}
	return out, nil
}
