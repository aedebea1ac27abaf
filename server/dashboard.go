package server

import (
	"context"

	"github.com/airlockfw/airlock/server/dashboard"
)

// Dashboard limits (see package server/dashboard).
const (
	DashboardSessionIDSize   = dashboard.SessionIDSize
	DashboardSessionIdle     = dashboard.SessionIdle
	DashboardSessionMax      = dashboard.SessionMax
	MaxDashboardSessions     = dashboard.MaxSessions
	MaxDashboardFormSize     = dashboard.MaxFormSize
	MaxDashboardFormFields   = dashboard.MaxFormFields
	DashboardListLimit       = dashboard.ListLimit
	DashboardStateCountLimit = dashboard.StateCountLimit
	DashboardCookie          = dashboard.Cookie
)

// Errors of dashboard requests.
var (
	ErrDashboardCSRF = dashboard.ErrCSRF
	ErrDashboardForm = dashboard.ErrForm
)

// deleteExpiredSessions deletes the dashboard sessions that expired (every
// CertCheckInterval; logins and uses delete expired ones too).
func (s *Server) deleteExpiredSessions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, StoreTimeout)
	defer cancel()
	n, err := dashboard.DeleteExpiredSessions(ctx, s.db, s.now())
	if err != nil {
		s.log.Warn("failed to delete expired dashboard sessions", "err", err)
		return
	}
	if n > 0 {
		s.log.Debug("deleted expired dashboard sessions", "count", n)
	}
}
