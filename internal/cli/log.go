package cli

import (
	"flag"
	"log/slog"
)

// LogLevelEnv is read when --log-level is not given.
const LogLevelEnv = "AIRLOCK_LOG_LEVEL"

// LogLevel is the --log-level flag of a long-running command (serve,
// agent). Its logs are JSON objects, one a line, with time, level and msg
// (slog.JSONHandler): the one format, so that the device binary links one
// handler.
type LogLevel string

// AddLogLevel defines --log-level on fs.
func AddLogLevel(fs *flag.FlagSet) *LogLevel {
	l := new(LogLevel)
	fs.StringVar((*string)(l), "log-level", "", "")
	return l
}

// Logger returns the JSON logger at the flag's level, else at
// $AIRLOCK_LOG_LEVEL's, else at info, writing to e.Stderr.
func (l *LogLevel) Logger(e *Env) (*slog.Logger, error) {
	name := string(*l)
	if name == "" {
		name = e.Getenv(LogLevelEnv)
	}
	var lv slog.Level
	switch name {
	case "debug":
		lv = slog.LevelDebug
	case "", "info":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, Usagef("--log-level %q is not debug, info, warn or error", name)
	}
	return slog.New(slog.NewJSONHandler(e.Stderr, &slog.HandlerOptions{Level: lv})), nil
}
