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
// files are opened through an [objstore.Store] (the local directory's
// os.Root: no "..", no symlink leaving the directory; or an S3 bucket,
// read with ranged requests pinned to one object version), only regular
// files are served, and there are no listings.
// Consistent-snapshot names are immutable and cached for a year; everything
// else is revalidated.
package repofiles

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/server/internal/httpx"
)

// MaxRepoPathLen bounds a repository file path in a request.
const MaxRepoPathLen = 1024

// RetryAfterUnavailable is the Retry-After (seconds) of a 503 answered when
// the repository store cannot be reached.
const RetryAfterUnavailable = "10"

var (
	// versionedMetadata matches consistent-snapshot metadata names (N.role.json).
	versionedMetadata = regexp.MustCompile(`^[0-9]+\.[^/]+\.json$`)
	// hashedTarget matches consistent-snapshot target names (<sha256>.<name>).
	hashedTarget = regexp.MustCompile(`(^|/)[0-9a-f]{64}\.[^/]+$`)
)

// CleanRepoPath checks a repository path taken from a URL: relative, at most
// MaxRepoPathLen bytes, no empty, "." or ".." segments, no segment starting
// with ".", no backslash or control characters, and equal to its
// path.Clean form (objstore.CheckName: one definition for URLs and object
// names).
func CleanRepoPath(p string) error {
	if len(p) > MaxRepoPathLen {
		return fmt.Errorf("path length %d outside 1..%d", len(p), MaxRepoPathLen)
	}
	return objstore.CheckName(p)
}

// Handler serves the object dir+"/"+path of the store store returns: GET
// and HEAD, Range and If-Range through http.ServeContent, no listings.
// served, if not nil, is told the bytes of each response body; log (nil:
// discard) gets refusals other than missing files.
func Handler(store func() objstore.Store, dir, contentType string, log *slog.Logger, served func(n int64)) http.HandlerFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("path")
		if err := CleanRepoPath(name); err != nil {
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "not found: %w", err))
			return
		}
		f, err := store().Open(r.Context(), dir+"/"+name)
		if errors.Is(err, objstore.ErrUnavailable) {
			// The bucket failed, not the file: say so, briefly cacheable,
			// so that clients and CDNs retry instead of caching a 404.
			log.Warn("repository store unavailable", "path", name, "err", err)
			w.Header().Set("Retry-After", RetryAfterUnavailable)
			httpx.WriteError(w, r, httpx.Status(http.StatusServiceUnavailable, "repository storage unavailable"))
			return
		}
		if err != nil {
			if !errors.Is(err, objstore.ErrNotExist) { // e.g. a symlink escaping the root
				log.Debug("repository file refused", "path", name, "err", err)
			}
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "not found"))
			return
		}
		defer f.Close()
		info := f.Info()
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		if info.ETag != "" {
			h.Set("ETag", info.ETag)
		}
		base := path.Base(name)
		h.Set("Cache-Control", CacheControl(dir+"/"+name))
		cw := &countWriter{ResponseWriter: w}
		http.ServeContent(cw, r, base, info.ModTime, f)
		if served != nil {
			served(cw.n)
		}
	}
}

// Cache-Control values: consistent-snapshot names are immutable.
const (
	CacheImmutable  = "public, max-age=31536000, immutable"
	CacheRevalidate = "no-cache"
)

// CacheControl returns the Cache-Control of a repository file by its name
// in the store ("metadata/..." or "targets/..."): immutable for
// consistent-snapshot names (N.role.json, <sha256>.<file>), revalidated
// for the rest (timestamp.json, root.json).
func CacheControl(name string) string {
	dir, rest, _ := strings.Cut(name, "/")
	if (dir == "metadata" && versionedMetadata.MatchString(path.Base(rest))) || (dir == "targets" && hashedTarget.MatchString(rest)) {
		return CacheImmutable
	}
	return CacheRevalidate
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
