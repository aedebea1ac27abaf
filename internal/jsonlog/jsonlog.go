// Package jsonlog writes log records as JSON lines in the shape of
// log/slog's JSONHandler ({"time":…,"level":"INFO","msg":…,"key":value…}),
// with the subset of slog's API the device agent uses: Debug, Info, Warn
// and Error with alternating key/value arguments. It exists because the
// device binary has a size budget, and dropping log/slog shrank it by 64 KB
// (docs/benchmarks.md); the server keeps log/slog. A *slog.Logger and a
// *Logger both satisfy the agent's Logger interface.
//
// Threat model: none beyond its output: strings are escaped as slog escapes
// them (TestSameLinesAsSlog, FuzzSameAsSlog), so no value can forge another
// line or field.
package jsonlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Level is a record's severity; the values are slog's.
type Level int

// The levels.
const (
	Debug Level = -4
	Info  Level = 0
	Warn  Level = 4
	Error Level = 8
)

// ErrLevel is wrapped by ParseLevel's errors.
var ErrLevel = errors.New("unknown log level")

// ParseLevel parses debug, info (or ""), warn or error.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "debug":
		return Debug, nil
	case "", "info":
		return Info, nil
	case "warn":
		return Warn, nil
	case "error":
		return Error, nil
	}
	return 0, fmt.Errorf("%w %q: want debug, info, warn or error", ErrLevel, s)
}

// Logger writes records at or above its level to w, one JSON object a
// line. It is safe for concurrent use.
type Logger struct {
	mu  sync.Mutex
	w   io.Writer
	min Level
	now func() time.Time
	buf []byte
}

// New returns a Logger writing records at min or above to w.
func New(w io.Writer, min Level) *Logger { return &Logger{w: w, min: min, now: time.Now} }

// Debug logs at Debug.
func (l *Logger) Debug(msg string, args ...any) { l.log(Debug, msg, args) }

// Info logs at Info.
func (l *Logger) Info(msg string, args ...any) { l.log(Info, msg, args) }

// Warn logs at Warn.
func (l *Logger) Warn(msg string, args ...any) { l.log(Warn, msg, args) }

// Error logs at Error.
func (l *Logger) Error(msg string, args ...any) { l.log(Error, msg, args) }

func (l *Logger) log(lv Level, msg string, args []any) {
	if l == nil || lv < l.min {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := append(l.buf[:0], `{"time":"`...)
	b = l.now().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"`...)
	b = append(b, [...]string{"DEBUG", "INFO", "WARN", "ERROR"}[(lv+4)/4]...)
	b = append(b, `","msg":`...)
	b = appendString(b, msg)
	for i := 0; i < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok || i+1 == len(args) {
			// slog's rule: a value without a key is "!BADKEY".
			b = append(b, `,"!BADKEY":`...)
			b = appendValue(b, args[i])
			i--
			continue
		}
		b = append(b, ',')
		b = appendString(b, key)
		b = append(b, ':')
		b = appendValue(b, args[i+1])
	}
	b = append(b, "}\n"...)
	l.buf = b
	l.w.Write(b)
}

// appendString appends s as a JSON string, escaped as slog does: as
// encoding/json without HTML escaping (<, > and & stay), invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...) // invalid UTF-8
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20, r == 0x2028, r == 0x2029:
			b = append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// appendValue encodes v as slog's JSONHandler does for the kinds the agent
// logs: strings, numbers, booleans, durations (nanoseconds), errors and
// Stringers (their text), anything else through encoding/json (its text
// when that fails).
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case bool:
		return strconv.AppendBool(b, v)
	case time.Duration:
		return strconv.AppendInt(b, int64(v), 10)
	case error:
		return appendString(b, v.Error())
	case fmt.Stringer:
		return appendString(b, v.String())
	}
	j, err := json.Marshal(v)
	if err != nil {
		return appendString(b, fmt.Sprint(v))
	}
	return append(b, j...)
}
