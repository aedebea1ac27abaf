package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlockfw/airlock/trust"
)

// dirSource reads a served repository directory (public/ of a repository:
// metadata/ and targets/) from the local filesystem, as an HTTP server would
// serve it.
type dirSource struct{ dir string }

func (d *dirSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	name := url.PathEscape(role) + ".json"
	if strings.ContainsAny(role, `/\`) || role == "" || role == "." || role == ".." {
		return nil, fmt.Errorf("%w: role name %q", trust.ErrInvalidName, role)
	}
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	f, err := os.Open(filepath.Join(d.dir, "metadata", name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, trust.ErrNotFound)
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, trust.ErrTooLarge, maxLength)
	}
	return data, nil
}

func (d *dirSource) OpenTarget(ctx context.Context, targetPath string, hashPrefix string) (io.ReadCloser, error) {
	segs := strings.Split(targetPath, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.Contains(s, `\`) {
			return nil, fmt.Errorf("%w: target path %q", trust.ErrInvalidName, targetPath)
		}
	}
	if hashPrefix != "" {
		segs[len(segs)-1] = hashPrefix + "." + segs[len(segs)-1]
	}
	f, err := os.Open(filepath.Join(append([]string{d.dir, "targets"}, segs...)...))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("target %q: %w", targetPath, trust.ErrNotFound)
		}
		return nil, err
	}
	return f, nil
}
