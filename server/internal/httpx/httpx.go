// Package httpx holds the HTTP plumbing every server handler shares: strict
// JSON request decoding, error responses, the per-request log record and the
// mapping of store errors to status codes.
//
// # Threat model
//
// Everything it parses comes from the network and is untrusted: request
// bodies are bounded (http.MaxBytesReader, 413), must be exactly one flat
// JSON object with unique lowercase keys and no unknown fields, and query
// strings may carry only the parameters a route names, once each. Error
// responses never carry the detail of a 500 (it is logged instead), and
// untrusted values quoted in errors are truncated. It holds no keys and
// makes no authorization decisions.
package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/server/store"
)

// Request body limits (413 when exceeded). Device API requests are bounded
// by the deviceapi limits (MaxEnrollRequestSize, ...).
const (
	// MaxAdminBodySize bounds admin API request bodies.
	MaxAdminBodySize = 4 << 10
	// MaxJSONKeys bounds the number of keys in a request object.
	MaxJSONKeys = 32
)

// Errors of request decoding; they become 400 (413 for ErrBodyTooLarge, 415
// for ErrContentType).
var (
	ErrBadRequest   = errors.New("bad request")
	ErrBodyTooLarge = fmt.Errorf("%w: body too large", ErrBadRequest)
	ErrContentType  = fmt.Errorf("%w: content type must be application/json", ErrBadRequest)
)

// DecodeJSON decodes exactly one JSON object from data into v: keys must be
// lowercase [a-z0-9_] words, unique and at most MaxJSONKeys, values may not
// be nested objects or arrays, unknown fields are rejected, and nothing but
// whitespace may follow. The strictness is internal/strictjson's (the one
// strict decoder) with a flat-object rule on top. Errors wrap ErrBadRequest.
func DecodeJSON(data []byte, v any) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("%w: body must be a JSON object", ErrBadRequest)
	}
	n := 0
	lim := strictjson.Limits{
		Size:  int64(len(data)), // the body is already bounded by its reader
		Depth: 1,                // an object of scalars
		Key: func(key string) error {
			if !isWord(key) {
				return fmt.Errorf("key %q: keys are lowercase [a-z0-9_]", Truncate(key))
			}
			if n++; n > MaxJSONKeys {
				return fmt.Errorf("more than %d keys (MaxJSONKeys)", MaxJSONKeys)
			}
			return nil
		},
	}
	if err := lim.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

func isWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Truncate shortens untrusted values before they are quoted in errors.
func Truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// ReadJSON reads a request body of at most limit bytes and decodes it with
// DecodeJSON.
func ReadJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return ErrContentType
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: limit is %d bytes", ErrBodyTooLarge, limit)
		}
		return fmt.Errorf("%w: failed to read body: %w", ErrBadRequest, err)
	}
	return DecodeJSON(data, v)
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// Error is an error with the status code to answer it with.
type Error struct {
	Code int
	msg  string
	err  error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.err }

// Status returns an error answered with code and the formatted message.
func Status(code int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, msg: err.Error(), err: errors.Unwrap(err)}
}

// WriteError answers with the status err carries (400 for ErrBadRequest,
// 413, 415, 500 otherwise) and a JSON {"error": …}. A 500's detail is logged,
// not sent.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := "internal error"
	var he *Error
	switch {
	case errors.As(err, &he):
		code, msg = he.Code, he.msg
	case errors.Is(err, ErrBodyTooLarge):
		code, msg = http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, ErrContentType):
		code, msg = http.StatusUnsupportedMediaType, err.Error()
	case errors.Is(err, ErrBadRequest):
		code, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code, msg = http.StatusServiceUnavailable, "request cancelled"
	}
	if info := InfoFrom(r); info != nil {
		info.Err = err
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
	}
	WriteJSON(w, code, ErrorBody{Error: msg})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}

// Info is filled in by handlers for the request log line.
type Info struct {
	DeviceID string
	Admin    string // admin token ID, or "session:" + user name
	Err      error
}

type infoKey struct{}

// WithInfo returns r carrying a new Info, and the Info.
func WithInfo(r *http.Request) (*http.Request, *Info) {
	info := &Info{}
	return r.WithContext(context.WithValue(r.Context(), infoKey{}, info)), info
}

// InfoFrom returns the Info of r (nil outside an instrumented handler).
func InfoFrom(r *http.Request) *Info {
	i, _ := r.Context().Value(infoKey{}).(*Info)
	return i
}

// StatusWriter records the status code and bytes of a response.
type StatusWriter struct {
	http.ResponseWriter
	Code  int
	Bytes int64
}

func (w *StatusWriter) WriteHeader(code int) {
	if w.Code == 0 {
		w.Code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(p []byte) (int, error) {
	if w.Code == 0 {
		w.Code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.Bytes += int64(n)
	return n, err
}

func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// QueryParams checks that q has only the allowed keys, each at most once.
func QueryParams(r *http.Request, allowed ...string) error {
	q := r.URL.Query()
	for k, vs := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return Status(http.StatusBadRequest, "unknown query parameter %q", Truncate(k))
		}
		if len(vs) != 1 {
			return Status(http.StatusBadRequest, "query parameter %q given %d times", k, len(vs))
		}
	}
	return nil
}

// IntParam returns the query parameter name as an integer in 0..max (0 when
// absent).
func IntParam(r *http.Request, name string, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, Status(http.StatusBadRequest, "query parameter %s must be an integer in 0..%d", name, max)
	}
	return n, nil
}

// ListLimit returns the "limit" query parameter of a list request that
// takes no other parameter: an integer in 0..store.MaxListLimit (0 when
// absent).
func ListLimit(r *http.Request) (int, error) {
	if err := QueryParams(r, "limit"); err != nil {
		return 0, err
	}
	return IntParam(r, "limit", store.MaxListLimit)
}

// LookupError maps store.ErrNotFound to 404 ("no such what") and
// store.ErrInvalid to 400.
func LookupError(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Status(http.StatusNotFound, "no such %s", what)
	case errors.Is(err, store.ErrInvalid):
		return Status(http.StatusBadRequest, "%w", err)
	}
	return err
}

// InputError maps store validation and uniqueness errors to 400, 409 and 404.
func InputError(err error) error {
	switch {
	case errors.Is(err, store.ErrInvalid):
		return Status(http.StatusBadRequest, "%w", err)
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
		return Status(http.StatusConflict, "%w", err)
	case errors.Is(err, store.ErrNotFound):
		return Status(http.StatusNotFound, "%w", err)
	}
	return err
}

// ReadEmpty accepts a POST body that is empty or the JSON object {}.
func ReadEmpty(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	var none struct{}
	return ReadJSON(w, r, MaxAdminBodySize, &none)
}
