package trust

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LogCheckpointFile is the Store name of the transparency log checkpoint
// the device holds (its view of the log, package tlog): written with the
// other verified metadata when an install commits, never before.
const LogCheckpointFile = "log-checkpoint"

// LogSource is a Source that also serves the repository's transparency log
// ("log/" beside "metadata/" and "targets/": C2SP tlog-tiles and Airlock's
// release index). FetchLog returns at most maxLength bytes of the file at
// path, relative to "log/", and an error wrapping ErrNotFound and
// fs.ErrNotExist when it does not exist. It is tlog.Fetcher.
type LogSource interface {
	FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error)
}

// checkLogPath accepts the paths of a served log: "/"-separated segments
// of [A-Za-z0-9._-], none empty, "." or "..".
func checkLogPath(p string) error {
	for _, seg := range strings.Split(p, "/") {
		ok := seg != "" && seg != "." && seg != ".."
		for i := 0; ok && i < len(seg); i++ {
			c := seg[i]
			ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
		}
		if !ok {
			return fmt.Errorf("%w: log path %q", ErrInvalidName, p)
		}
	}
	return nil
}

func notExist(err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	return err
}

// FetchLog implements LogSource: "<dir>/log/<path>".
func (d *dirSource) FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkLogPath(path); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.dir, "log", filepath.FromSlash(path)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("log file %s: %w: %w", path, ErrNotFound, fs.ErrNotExist)
		}
		return nil, err
	}
	defer f.Close()
	return readLimited("log file "+path, f, maxLength)
}

// FetchLog implements LogSource: the log is "log/" beside the metadata
// directory ("<repo>/metadata/" → "<repo>/log/<path>").
func (s *httpSource) FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error) {
	base, ok := strings.CutSuffix(s.metadataURL, "metadata/")
	if !ok {
		return nil, fmt.Errorf("log file %s: the metadata URL %q does not end in metadata/: %w: %w", path, s.metadataURL, ErrNotFound, fs.ErrNotExist)
	}
	if err := checkLogPath(path); err != nil {
		return nil, err
	}
	b, err := s.open(ctx, base+"log/"+path, s.opts.MetadataTimeout, nil)
	if err != nil {
		return nil, notExist(err)
	}
	defer b.Close()
	if cl := b.contentLength; cl > maxLength {
		return nil, fmt.Errorf("log file %s: %w: Content-Length %d > %d", path, ErrTooLarge, cl, maxLength)
	}
	return readLimited("log file "+path, b, maxLength)
}
