package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/trust"
)

// BundleSource is a trust.Source over an offline bundle: the metadata
// section serves the TUF metadata, and the payload is served once, as a
// stream, for the bundle's target path. Nothing in it is trusted: the
// pipeline verifies the metadata with the trusted state and the payload
// against the verified target, and reads the bundle to the end of its
// trailer (CopyPayload).
type BundleSource struct {
	br     *bundle.Reader
	m      *bundle.Metadata
	src    trust.MapSource
	opened bool
}

var _ trust.Source = (*BundleSource)(nil)

// OpenBundle runs the format stage on the bundle in r: it reads the metadata
// section (no payload byte is consumed) within the bundle format limits,
// the payload within the transport limit (bundle.MaxPayloadSize), never the
// slot size, which bounds the installed image (Facts.SlotSize, the slot
// check), not the payload, which may be compressed. Failures are *Error
// with CheckFormat.
func OpenBundle(r io.Reader) (*BundleSource, error) {
	br, err := bundle.NewReader(r, bundle.Limits{})
	if err != nil {
		return nil, fail(CheckFormat, err)
	}
	m := br.Metadata()
	b := &BundleSource{br: br, m: m, src: trust.MapSource{Roots: map[int64][]byte{}, Metadata: map[string][]byte{}}}
	for i, raw := range m.RootChain {
		var v struct {
			Signed struct {
				Version int64 `json:"version"`
			} `json:"signed"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fail(CheckFormat, fmt.Errorf("bundle: root chain entry %d: %v: %w", i, err, bundle.ErrMalformed))
		}
		b.src.Roots[v.Signed.Version] = raw
	}
	b.src.Metadata["timestamp"] = m.Timestamp
	b.src.Metadata["snapshot"] = m.Snapshot
	b.src.Metadata["targets"] = m.Targets
	for _, r := range m.Delegated {
		b.src.Metadata[r.Name] = r.Data
	}
	return b, nil
}

// TargetPath returns the target path the bundle carries.
func (b *BundleSource) TargetPath() string { return b.m.TargetPath }

// DeltaFrom returns the version of the release a delta bundle applies to,
// "" for a bundle with the whole payload.
func (b *BundleSource) DeltaFrom() string { return b.m.DeltaFrom }

// PayloadLength returns the payload length the bundle declares.
func (b *BundleSource) PayloadLength() int64 { return b.m.PayloadLength }

// FetchMetadata implements trust.Source.
func (b *BundleSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	return b.src.FetchMetadata(ctx, role, version, maxLength)
}

// errPayloadOpened refuses a second read of the streamed payload.
var errPayloadOpened = errors.New("bundle payload can be read only once")

// OpenTarget implements trust.Source: it returns the payload stream, once,
// for the bundle's target path only.
func (b *BundleSource) OpenTarget(ctx context.Context, targetPath, hashPrefix string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if targetPath != b.m.TargetPath {
		return nil, fmt.Errorf("bundle carries %q, not %q: %w", b.m.TargetPath, targetPath, trust.ErrNotFound)
	}
	if b.opened {
		return nil, errPayloadOpened
	}
	b.opened = true
	return io.NopCloser(b.br.Payload()), nil
}
