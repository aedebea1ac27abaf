package server

import "github.com/airlockfw/airlock/adminapi"

// The admin API's wire types live in package adminapi, shared with its
// client; these aliases keep the server's API.
type (
	User                          = adminapi.User
	UserList                      = adminapi.UserList
	CreateUserRequest             = adminapi.CreateUserRequest
	CreateTokenRequest            = adminapi.CreateTokenRequest
	TokenResponse                 = adminapi.TokenResponse
	CreateUserResponse            = adminapi.CreateUserResponse
	Release                       = adminapi.Release
	Approval                      = adminapi.Approval
	ReleaseList                   = adminapi.ReleaseList
	CreateReleaseRequest          = adminapi.CreateReleaseRequest
	CreateRolloutRequest          = adminapi.CreateRolloutRequest
	RolloutView                   = adminapi.RolloutView
	StageView                     = adminapi.StageView
	StageCounts                   = adminapi.StageCounts
	RolloutList                   = adminapi.RolloutList
	RolloutActionRequest          = adminapi.RolloutActionRequest
	TagsRequest                   = adminapi.TagsRequest
	Device                        = adminapi.Device
	DeviceList                    = adminapi.DeviceList
	Event                         = adminapi.Event
	EventList                     = adminapi.EventList
	CreateEnrollmentTokenRequest  = adminapi.CreateEnrollmentTokenRequest
	CreateEnrollmentTokenResponse = adminapi.CreateEnrollmentTokenResponse
	StatsResponse                 = adminapi.StatsResponse
)
