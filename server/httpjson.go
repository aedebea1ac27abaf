package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
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
// whitespace may follow. Errors wrap ErrBadRequest.
func DecodeJSON(data []byte, v any) error {
	if err := checkFlatObject(data); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

// checkFlatObject walks the tokens of data: one object of scalar values,
// keys unique and of the form [a-z0-9_]+ (so Go's case-insensitive field
// matching cannot alias two spellings), then end of input.
func checkFlatObject(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("body must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		key := tok.(string) // object keys are always strings
		if !isWord(key) {
			return fmt.Errorf("key %q: keys are lowercase [a-z0-9_]", truncate(key))
		}
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		if len(seen) == MaxJSONKeys {
			return fmt.Errorf("more than %d keys (MaxJSONKeys)", MaxJSONKeys)
		}
		seen[key] = true
		tok, err = dec.Token()
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		if _, ok := tok.(json.Delim); ok {
			return fmt.Errorf("key %q: nested objects and arrays are not allowed", key)
		}
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
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

// truncate shortens untrusted values before they are quoted in errors.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// readJSON reads a request body of at most limit bytes and decodes it with
// DecodeJSON.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
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

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// httpError is an error with the status code to answer it with.
type httpError struct {
	code int
	msg  string
	err  error
}

func (e *httpError) Error() string { return e.msg }
func (e *httpError) Unwrap() error { return e.err }

func errStatus(code int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &httpError{code: code, msg: err.Error(), err: errors.Unwrap(err)}
}

// writeError answers with the status err carries (400 for ErrBadRequest,
// 413, 415, 500 otherwise) and a JSON {"error": …}. A 500's detail is logged,
// not sent.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := "internal error"
	var he *httpError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	case errors.Is(err, ErrBodyTooLarge):
		code, msg = http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, ErrContentType):
		code, msg = http.StatusUnsupportedMediaType, err.Error()
	case errors.Is(err, ErrBadRequest):
		code, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code, msg = http.StatusServiceUnavailable, "request cancelled"
	}
	if info := infoFrom(r); info != nil {
		info.err = err
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
	}
	writeJSON(w, code, errorBody{Error: msg})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
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

// reqInfo is filled in by handlers for the request log line.
type reqInfo struct {
	deviceID string
	admin    string // admin token ID
	err      error
}

type infoKey struct{}

func infoFrom(r *http.Request) *reqInfo {
	i, _ := r.Context().Value(infoKey{}).(*reqInfo)
	return i
}

// statusWriter records the status code and bytes of a response.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// queryParams checks that q has only the allowed keys, each at most once.
func queryParams(r *http.Request, allowed ...string) error {
	q := r.URL.Query()
	for k, vs := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return errStatus(http.StatusBadRequest, "unknown query parameter %q", truncate(k))
		}
		if len(vs) != 1 {
			return errStatus(http.StatusBadRequest, "query parameter %q given %d times", k, len(vs))
		}
	}
	return nil
}
