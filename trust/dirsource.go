package trust

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type dirSource struct{ dir string }

// NewDirSource returns a Source reading a served repository directory from
// the local filesystem — dir/metadata and dir/targets, the public/ directory
// of a repository — under exactly the names the HTTP source requests, so a
// repository verified from disk is the one a static HTTP server serves.
// It is a RangeSource.
func NewDirSource(dir string) Source { return &dirSource{dir: dir} }

func (d *dirSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := roleFileName(role) // quoted: no path separators
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	f, err := os.Open(filepath.Join(d.dir, "metadata", name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return nil, err
	}
	defer f.Close()
	return readLimited(name, f, maxLength)
}

func (d *dirSource) OpenTarget(ctx context.Context, targetPath string, hashPrefix string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := targetURLPath(targetPath, hashPrefix); err != nil { // the same segment checks as HTTP
		return nil, err
	}
	segs := strings.Split(targetPath, "/")
	for _, s := range segs {
		if strings.Contains(s, `\`) {
			return nil, fmt.Errorf("%w: target path %q", ErrInvalidName, targetPath)
		}
	}
	if hashPrefix != "" {
		segs[len(segs)-1] = hashPrefix + "." + segs[len(segs)-1]
	}
	f, err := os.Open(filepath.Join(append([]string{d.dir, "targets"}, segs...)...))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("target %q: %w", targetPath, ErrNotFound)
		}
		return nil, err
	}
	return f, nil
}

// OpenTargetRange implements RangeSource: the file opened as OpenTarget
// opens it, whose size must be length.
func (d *dirSource) OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error) {
	if err := ValidRange(length, off, n); err != nil {
		return nil, err
	}
	rc, err := d.OpenTarget(ctx, targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	return seekRange(rc, targetPath, length, off, n)
}
