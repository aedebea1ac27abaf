package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// InstallDelta runs the payload stage of a delta bundle (p.Delta() not
// nil) into slot, rebuilding the release from base, the running release in
// the active slot, which the device has checked is the delta's base: the
// tree stream rebuilds the new tree (verified against the signed root), the
// data stream the image (every block verified against the new tree before
// it is written). Then the bundle is read to its end. Failures are *Error.
func InstallDelta(slot payload.Slot, p *Payload, base payload.Base, o payload.CopyOptions) (payload.Result, error) {
	e, ok := p.t.Indexed()
	if !ok || p.delta == nil {
		return payload.Result{}, fail(CheckPayload, errors.New("internal error: not a delta bundle of a schema 2 release"))
	}
	e.Length = p.delta.Length()
	res, err := payload.CopyDelta(slot, p.rc, e, deltaStreams(p.delta), base, o)
	if err != nil {
		return res, classify(err)
	}
	return res, p.finish()
}

// CanReuse reports whether t's payload can be installed with InstallReuse
// from its session's source: a schema 2 release from a source that serves
// byte ranges.
func CanReuse(t *Target) bool {
	_, ok := t.Indexed()
	_, rs := t.session.src.(trust.RangeSource)
	return ok && rs
}

// InstallReuse runs the payload stage of a schema 2 target from a source
// that serves byte ranges (an online repository), reusing the blocks of
// base, the running release in the active slot: payload.CopyReuse. It
// fails wrapping payload.ErrNoBase, or trust.ErrRange from a server that
// does not serve ranges, before anything but the tree is written; the
// caller then installs the whole payload (OpenPayload, InstallPayload).
// Failures are *Error.
func InstallReuse(ctx context.Context, slot payload.Slot, t *Target, base payload.Base, o payload.CopyOptions) (payload.ReuseResult, error) {
	e, ok := t.Indexed()
	rs, isRange := t.session.src.(trust.RangeSource)
	if !ok || !isRange {
		return payload.ReuseResult{}, fail(CheckPayload, fmt.Errorf("%w: the source does not serve byte ranges", payload.ErrNoBase))
	}
	prefix := t.hashPrefix()
	res, err := payload.CopyReuse(slot, e, base, func(off, n int64) (io.ReadCloser, error) {
		return rs.OpenTargetRange(ctx, t.Path, prefix, t.File.Length, off, n)
	}, o)
	if err != nil {
		return res, classify(err)
	}
	return res, nil
}

func deltaStreams(d *release.Delta) payload.DeltaStreams {
	st := func(s release.DeltaStream) payload.Stream {
		return payload.Stream{Length: s.Length, HeaderLength: s.HeaderLength, HeaderSHA256: s.HeaderSHA256[:]}
	}
	return payload.DeltaStreams{Tree: st(d.Tree), Data: st(d.Data)}
}

func deltaBases(m *release.Metadata) string {
	if len(m.Deltas) == 0 {
		return "no release"
	}
	var b []string
	for _, d := range m.Deltas {
		b = append(b, d.From.String())
	}
	return strings.Join(b, ", ")
}
