package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/airlockfw/airlock/release"
)

// Candidate is one release that a verified product role lists. Listing is
// not authorization: Check decides.
type Candidate struct {
	Path    string
	Version release.Version
}

// Releases lists the releases of product that its verified role lists,
// newest first. Entries whose path or version do not parse are left out
// (they can never be installed).
func (s *Session) Releases(ctx context.Context, product release.Product) ([]Candidate, error) {
	names, err := s.client.DelegatedRoles()
	if err != nil {
		return nil, fail(CheckTarget, err)
	}
	if !slices.Contains(names, product.RoleName()) {
		return nil, fail(CheckSelection, fmt.Errorf("%w: the repository has no role for product %q", ErrNoRelease, product))
	}
	role, err := s.client.Role(ctx, product.RoleName())
	if err != nil {
		return nil, fail(CheckTarget, err)
	}
	var out []Candidate
	for path := range role.Signed.Targets {
		p, v, _, err := release.ParseTargetPath(path)
		if err != nil || p != product {
			continue
		}
		out = append(out, Candidate{Path: path, Version: v})
	}
	sort.Slice(out, func(i, j int) bool { return release.Compare(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

// Selection narrows Select.
type Selection struct {
	// Version selects one release; "" means the newest that passes.
	Version string
	// Skip, if not nil, leaves out paths it returns true for (the agent
	// skips releases that were rolled back on the device).
	Skip func(path string) bool
}

// Select runs Check on the releases of the facts' product, newest first,
// and returns the first that passes. With sel.Version it checks that release
// only and returns its refusal. When none passes, the error is the first
// refusal by the transparency check if there is one (a release that passed
// every other check), else it wraps ErrNoRelease and says why each was
// refused.
func (s *Session) Select(ctx context.Context, f Facts, sel Selection) (*Target, error) {
	product, err := release.ParseProduct(f.Device.Product)
	if err != nil {
		return nil, fail(CheckSelection, fmt.Errorf("device product: %w", err))
	}
	cands, err := s.Releases(ctx, product)
	if err != nil {
		return nil, err
	}
	var refused []error
	var unlogged error // the first refusal by the transparency check
	for _, c := range cands {
		if sel.Version != "" {
			if c.Version.String() != sel.Version {
				continue
			}
			return s.Check(ctx, c.Path, f)
		}
		if sel.Skip != nil && sel.Skip(c.Path) {
			continue
		}
		t, err := s.Check(ctx, c.Path, f)
		if err != nil {
			if e, ok := errors.AsType[*Error](err); ok && e.Check == CheckTransparency && unlogged == nil {
				unlogged = err
			}
			refused = append(refused, fmt.Errorf("%s: %w", c.Version, err))
			continue
		}
		return t, nil
	}
	// A release the device would install but for the log is not "up to
	// date": it is a release signed and not (visibly) logged — a stolen key
	// or a broken log. Say so.
	if unlogged != nil {
		return nil, unlogged
	}
	if sel.Version != "" {
		return nil, fail(CheckSelection, fmt.Errorf("%w: product %q has no release %q", ErrNoRelease, product, sel.Version))
	}
	if len(cands) == 0 {
		return nil, fail(CheckSelection, fmt.Errorf("%w: no release of product %q in the repository", ErrNoRelease, product))
	}
	return nil, fail(CheckSelection, fmt.Errorf("%w: no release of %q passes for this device: %w", ErrNoRelease, product, errors.Join(refused...)))
}
