package server

import "github.com/airlockfw/airlock/server/dashboard"

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
