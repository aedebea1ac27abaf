package release

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of product IDs, file names and target paths.
const (
	// MaxProductSegments is the largest number of "/"-separated segments in
	// a product ID.
	MaxProductSegments = 4
	// MaxProductSegmentLength is the longest product ID segment, in bytes.
	MaxProductSegmentLength = 63
	// MaxProductLength is the longest product ID, in bytes.
	MaxProductLength = MaxProductSegments*MaxProductSegmentLength + MaxProductSegments - 1
	// MaxFileNameLength is the longest release file name, in bytes.
	MaxFileNameLength = 128
	// MaxTargetPathLength is the longest release target path, in bytes.
	MaxTargetPathLength = MaxProductLength + 1 + MaxVersionLength + 1 + MaxFileNameLength
)

var (
	// ErrInvalidProduct is wrapped by errors about product IDs.
	ErrInvalidProduct = errors.New("invalid product ID")
	// ErrInvalidTargetPath is wrapped by errors about release target paths.
	ErrInvalidTargetPath = errors.New("invalid target path")
)

// Product is a validated product ID: 1 to [MaxProductSegments] segments
// joined by "/", each matching ^[a-z0-9][a-z0-9-]{0,62}$, for example
// "acme/router-x1". The zero Product is unset and invalid.
//
// Segments contain no dots, so the mapping to TUF role names (segments joined
// by ".") is one-to-one, and a product segment can never be mistaken for a
// version (which always contains dots).
type Product struct {
	s string
}

// ParseProduct parses and validates a product ID.
func ParseProduct(s string) (Product, error) {
	if len(s) > MaxProductLength {
		return Product{}, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidProduct, len(s), MaxProductLength)
	}
	if s == "" {
		return Product{}, fmt.Errorf("%w: empty", ErrInvalidProduct)
	}
	segs := strings.Split(s, "/")
	if len(segs) > MaxProductSegments {
		return Product{}, fmt.Errorf("%w %q: %d segments, the limit is %d", ErrInvalidProduct, s, len(segs), MaxProductSegments)
	}
	for _, seg := range segs {
		if !isProductSegment(seg) {
			return Product{}, fmt.Errorf("%w %q: segment %q does not match ^[a-z0-9][a-z0-9-]{0,62}$", ErrInvalidProduct, s, seg)
		}
	}
	return Product{s: s}, nil
}

func isProductSegment(s string) bool {
	if len(s) == 0 || len(s) > MaxProductSegmentLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}

// String returns the product ID, "" for the zero Product.
func (p Product) String() string { return p.s }

// IsZero reports whether p is the zero (unset) Product.
func (p Product) IsZero() bool { return p.s == "" }

// RoleName returns the name of the delegated TUF role that signs this
// product's releases: the segments joined by ".", e.g. "acme.router-x1".
func (p Product) RoleName() string { return strings.ReplaceAll(p.s, "/", ".") }

// PathPattern returns the TUF delegation path pattern the product role is
// restricted to: the product ID followed by "/*/*" (version and file name).
// TUF matches patterns segment by segment ("*" never crosses a "/"), so the
// pattern covers exactly this product's release paths.
func (p Product) PathPattern() string { return p.s + "/*/*" }

// MarshalText implements [encoding.TextMarshaler]. The zero Product cannot
// be marshaled.
func (p Product) MarshalText() ([]byte, error) {
	if p.IsZero() {
		return nil, fmt.Errorf("%w: zero product", ErrInvalidProduct)
	}
	return []byte(p.s), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseProduct].
func (p *Product) UnmarshalText(b []byte) error {
	q, err := ParseProduct(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// isFileName reports whether s matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$.
func isFileName(s string) bool { return isName(s, MaxFileNameLength) }

// isName reports whether s matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,max-1}$.
func isName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// TargetPath returns the TUF target path of a release file:
// product "/" version "/" fileName, e.g. "acme/router-x1/1.1.0/firmware.img".
// fileName must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$.
func TargetPath(p Product, v Version, fileName string) (string, error) {
	if p.IsZero() {
		return "", fmt.Errorf("%w: zero product", ErrInvalidTargetPath)
	}
	if v.IsZero() {
		return "", fmt.Errorf("%w: zero version", ErrInvalidTargetPath)
	}
	if !isFileName(fileName) {
		return "", fmt.Errorf("%w: file name %q does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", ErrInvalidTargetPath, fileName)
	}
	return p.s + "/" + v.s + "/" + fileName, nil
}

// ParseTargetPath splits a release target path into product, version and
// file name, validating each. It is the inverse of [TargetPath].
func ParseTargetPath(path string) (Product, Version, string, error) {
	if len(path) > MaxTargetPathLength {
		return Product{}, Version{}, "", fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalidTargetPath, len(path), MaxTargetPathLength)
	}
	segs := strings.Split(path, "/")
	if len(segs) < 3 || len(segs) > MaxProductSegments+2 {
		return Product{}, Version{}, "", fmt.Errorf("%w %q: want PRODUCT/VERSION/FILE with 1 to %d product segments", ErrInvalidTargetPath, path, MaxProductSegments)
	}
	n := len(segs)
	p, err := ParseProduct(strings.Join(segs[:n-2], "/"))
	if err != nil {
		return Product{}, Version{}, "", fmt.Errorf("%w %q: %w", ErrInvalidTargetPath, path, err)
	}
	v, err := ParseVersion(segs[n-2])
	if err != nil {
		return Product{}, Version{}, "", fmt.Errorf("%w %q: %w", ErrInvalidTargetPath, path, err)
	}
	if !isFileName(segs[n-1]) {
		return Product{}, Version{}, "", fmt.Errorf("%w %q: file name %q does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", ErrInvalidTargetPath, path, segs[n-1])
	}
	return p, v, segs[n-1], nil
}
