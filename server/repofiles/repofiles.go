// Package repofiles serves the image repository's static files (TUF
// metadata and payloads under REPO/public) to devices and anyone else.
//
// # Threat model
//
// Everything served is public and signed offline by the vendor; devices
// verify it, so the server is not trusted for its content and this package
// adds no authentication. What it must prevent is reading anything else:
// request paths are untrusted and checked by [CleanRepoPath] (relative,
// clean, no dot segments, no control characters or backslashes, bounded),
// files are opened through an [os.Root] (no "..", no symlink leaving the
// directory), only regular files are served, and there are no listings.
// Consistent-snapshot names are immutable and cached for a year; everything
// else is revalidated.
package repofiles

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/airlockfw/airlock/server/internal/httpx"
)

// MaxRepoPathLen bounds a repository file path in a request.
const MaxRepoPathLen = 1024

// Opener opens a file of a confined directory (an *os.Root).
type Opener interface {
	Open(name string) (*os.File, error)
}

var (
	// versionedMetadata matches consistent-snapshot metadata names (N.role.json).
	versionedMetadata = regexp.MustCompile(`^[0-9]+\.[^/]+\.json$`)
	// hashedTarget matches consistent-snapshot target names (<sha256>.<name>).
	hashedTarget = regexp.MustCompile(`(^|/)[0-9a-f]{64}\.[^/]+$`)
)

// CleanRepoPath checks a repository path taken from a URL: relative, at most
// MaxRepoPathLen bytes, no empty, "." or ".." segments, no segment starting
// with ".", no backslash or control characters, and equal to its
// path.Clean form.
func CleanRepoPath(p string) error {
	if p == "" || len(p) > MaxRepoPathLen {
		return fmt.Errorf("path length %d outside 1..%d", len(p), MaxRepoPathLen)
	}
	if path.Clean("/"+p) != "/"+p {
		return fmt.Errorf("path %q is not clean", httpx.Truncate(p))
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg[0] == '.' {
			return fmt.Errorf("path %q has an empty or dot segment", httpx.Truncate(p))
		}
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("path %q has a forbidden character", httpx.Truncate(p))
		}
	}
	return nil
}

// Handler serves a regular file under the root root returns: GET and HEAD,
// Range and If-Range through http.ServeContent, no listings. The root
// (os.Root) refuses ".." and symlinks that leave the directory. served, if
// not nil, is told the bytes of each response body; log (nil: discard)
// gets refusals other than missing files.
func Handler(root func() Opener, contentType string, log *slog.Logger, served func(n int64)) http.HandlerFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	isMeta := contentType == "application/json"
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("path")
		if err := CleanRepoPath(name); err != nil {
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "not found: %w", err))
			return
		}
		f, err := root().Open(name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // e.g. a symlink escaping the root
				log.Debug("repository file refused", "path", name, "err", err)
			}
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "not found"))
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "not found"))
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
		base := path.Base(name)
		if (isMeta && versionedMetadata.MatchString(base)) || (!isMeta && hashedTarget.MatchString(name)) {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		cw := &countWriter{ResponseWriter: w}
		http.ServeContent(cw, r, base, fi.ModTime(), f)
		if served != nil {
			served(cw.n)
		}
	}
}

type countWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
