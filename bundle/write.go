package bundle

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Write writes a complete bundle for m to w: the header (metadata section and
// its digest), exactly m.PayloadLength bytes streamed from payload, and the
// trailer.
//
// m is checked against the format limits and rules first; nothing is written
// if it fails. If payload yields fewer or more than m.PayloadLength bytes,
// Write returns an error wrapping [ErrPayloadLength] without writing the
// trailer, so the partial output is never a valid bundle. The payload is never
// held in memory.
func Write(w io.Writer, m *Metadata, payload io.Reader) error {
	if m == nil {
		return fmt.Errorf("bundle: nil metadata: %w", ErrMalformed)
	}
	if err := m.validate(formatLimits); err != nil {
		return err
	}
	if _, err := w.Write(encodeHeader(m)); err != nil {
		return fmt.Errorf("bundle: failed to write header: %w", err)
	}

	h := sha256.New()
	n, err := io.CopyN(io.MultiWriter(w, h), payload, m.PayloadLength)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("bundle: payload has %d bytes, PayloadLength is %d: %w", n, m.PayloadLength, ErrPayloadLength)
	}
	if err != nil {
		return fmt.Errorf("bundle: failed to copy payload: %w", err)
	}
	var one [1]byte
	switch _, err := io.ReadFull(payload, one[:]); {
	case err == nil:
		return fmt.Errorf("bundle: payload is longer than PayloadLength %d: %w", m.PayloadLength, ErrPayloadLength)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("bundle: failed to read payload: %w", err)
	}

	if _, err := w.Write(appendTrailer(nil, m.PayloadLength, h.Sum(nil))); err != nil {
		return fmt.Errorf("bundle: failed to write trailer: %w", err)
	}
	return nil
}

// encodeHeader encodes m's header, digest included, without validating m.
// The layout is the table in docs/bundle-format.md.
func encodeHeader(m *Metadata) []byte {
	b := make([]byte, 0, headerSize(m))
	b = append(b, Magic...)
	switch {
	case m.LogProof != nil:
		b = binary.BigEndian.AppendUint16(b, FormatVersionLog)
	case m.DeltaFrom == "":
		b = binary.BigEndian.AppendUint16(b, FormatVersion)
	default:
		b = binary.BigEndian.AppendUint16(b, FormatVersionDelta)
	}
	b = append(b, byte(len(m.RootChain)))
	for _, r := range m.RootChain {
		b = appendBlob(b, r)
	}
	b = appendBlob(b, m.Timestamp)
	b = appendBlob(b, m.Snapshot)
	b = appendBlob(b, m.Targets)
	b = append(b, byte(len(m.Delegated)))
	for _, d := range m.Delegated {
		b = append(b, byte(len(d.Name)))
		b = append(b, d.Name...)
		b = appendBlob(b, d.Data)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.TargetPath)))
	b = append(b, m.TargetPath...)
	if m.DeltaFrom != "" || m.LogProof != nil {
		b = append(b, byte(len(m.DeltaFrom)))
		b = append(b, m.DeltaFrom...)
	}
	if m.LogProof != nil {
		b = appendBlob(b, m.LogProof)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.PayloadLength))
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func appendBlob(b, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func appendTrailer(b []byte, length int64, sum []byte) []byte {
	b = append(b, TrailerMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(length))
	return append(b, sum...)
}
