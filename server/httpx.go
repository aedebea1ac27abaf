package server

import "github.com/airlockfw/airlock/server/internal/httpx"

// Request body limits (413 when exceeded). Device API requests are bounded
// by the deviceapi limits (MaxEnrollRequestSize, ...).
const (
	// MaxAdminBodySize bounds admin API request bodies.
	MaxAdminBodySize = httpx.MaxAdminBodySize
	// MaxJSONKeys bounds the number of keys in a request object.
	MaxJSONKeys = httpx.MaxJSONKeys
)

// Errors of request decoding; they become 400 (413 for ErrBodyTooLarge, 415
// for ErrContentType).
var (
	ErrBadRequest   = httpx.ErrBadRequest
	ErrBodyTooLarge = httpx.ErrBodyTooLarge
	ErrContentType  = httpx.ErrContentType
)

// DecodeJSON decodes exactly one flat JSON object from data into v; see
// [httpx.DecodeJSON]. Errors wrap ErrBadRequest.
func DecodeJSON(data []byte, v any) error { return httpx.DecodeJSON(data, v) }
