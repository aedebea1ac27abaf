package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/server/dashboard"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/repofiles"
)

// routes builds the HTTPS handler. The paths of the route patterns double
// as the "route" label of airlock_http_requests_total and
// airlock_http_request_duration_seconds.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repo/metadata/{path...}", repofiles.Handler(s.repoStore, "metadata", "application/json", s.log, s.countServed))
	mux.HandleFunc("GET /repo/targets/{path...}", repofiles.Handler(s.repoStore, "targets", "application/octet-stream", s.log, s.countServed))
	// The transparency log (C2SP tlog-tiles: checkpoint, tiles, entry
	// bundles, and the release index files), as published by repo publish.
	mux.HandleFunc("GET /repo/log/{path...}", repofiles.Handler(s.repoStore, "log", "application/octet-stream", s.log, s.countServed))

	mux.HandleFunc("POST /api/v1/enroll", s.handleEnroll)
	mux.HandleFunc("POST /api/v1/checkin", s.device(s.handleCheckin))
	mux.HandleFunc("POST /api/v1/status", s.device(s.handleStatus))
	mux.HandleFunc("GET /api/v1/device", s.device(s.handleGetDevice))

	// Every admin route declares its Action (auth.go: role table, TOTP).
	mux.HandleFunc("GET /api/v1/admin/devices", s.auth.Admin(ActionFleetRead, s.handleListDevices))
	mux.HandleFunc("GET /api/v1/admin/devices/{id}", s.auth.Admin(ActionFleetRead, s.handleAdminDevice))
	mux.HandleFunc("GET /api/v1/admin/devices/{id}/events", s.auth.Admin(ActionFleetRead, s.handleAdminEvents))
	mux.HandleFunc("POST /api/v1/admin/enrollment-tokens", s.auth.Admin(ActionEnrollTokenWrite, s.handleCreateEnrollmentToken))
	mux.HandleFunc("GET /api/v1/admin/stats", s.auth.Admin(ActionFleetRead, s.handleStats))
	mux.HandleFunc("GET /metrics", s.auth.Admin(ActionFleetRead, func(w http.ResponseWriter, r *http.Request) {
		s.metrics.Handler().ServeHTTP(w, r)
	}))
	// Sessions (airlock login/logout) authenticate themselves: login takes an
	// admin token and a TOTP code, logout the session (users.go).
	mux.HandleFunc("POST /api/v1/admin/login", s.handleLogin)
	mux.HandleFunc("POST /api/v1/admin/logout", s.handleLogout)
	s.governanceRoutes(mux)
	s.rolloutRoutes(mux)
	dashboard.Routes(mux, dashboard.Config{DB: s.db, Auth: s.auth, Rollouts: s, Releases: s.releases,
		Now: s.now, Audit: s.cfg.Audit, AuditDir: s.cfg.AuditDir, Provenance: s.releaseProvenance})
	return s.instrument(mux)
}

func (s *Server) repoStore() objstore.Store { return s.repo }

// countServed counts repository bytes served (airlock_served_bytes_total).
func (s *Server) countServed(n int64) { s.metrics.Bytes.Add(float64(n)) }

// MaxRepoPathLen bounds a repository file path in a request.
const MaxRepoPathLen = repofiles.MaxRepoPathLen

// CleanRepoPath checks a repository path taken from a URL; see
// [repofiles.CleanRepoPath].
func CleanRepoPath(p string) error { return repofiles.CleanRepoPath(p) }

// metricsOnlyHandler serves /metrics without authentication (plain-HTTP
// loopback listener).
func (s *Server) metricsOnlyHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	return mux
}

// quietRoutes are the polling paths a fleet calls on every poll: their
// successful requests are logged at debug level (counted in the metrics
// either way), so a fleet polling with nothing to do does not write a log
// line per device per poll. Failures, and every other route, are logged at
// info level or above.
var quietRoutes = map[string]bool{
	"POST /api/v1/checkin":           true,
	"GET /repo/metadata/{path...}":   true,
	"GET /repo/targets/{path...}":    true,
	"GET /repo/log/{path...}":        true,
	"GET " + DirectorPath + "{file}": true,
}

// instrument logs one line per request and counts it.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, info := httpx.WithInfo(r)
		sw := &httpx.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		elapsed := time.Since(start)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		code := sw.Code
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.Observe(r.Pattern, r.Method, code, elapsed)
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", code),
			slog.Int64("bytes", sw.Bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr),
		}
		if info.DeviceID != "" {
			attrs = append(attrs, slog.String("device_id", info.DeviceID))
		}
		if info.Admin != "" {
			attrs = append(attrs, slog.String("admin_token_id", info.Admin))
		}
		level := slog.LevelInfo
		if code < 400 && quietRoutes[r.Pattern] {
			level = slog.LevelDebug
		}
		if info.Err != nil {
			attrs = append(attrs, slog.String("err", info.Err.Error()))
			if code >= 500 {
				level = slog.LevelError
			}
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}
