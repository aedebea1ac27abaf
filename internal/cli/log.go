package cli

import (
	"flag"
	"log/slog"
)

// LogLevelEnv is read when --log-level is not given.
const LogLevelEnv = "AIRLOCK_LOG_LEVEL"

// LogFlags are the --log-level and --log-format flags of a long-running
// command (serve, agent).
type LogFlags struct{ level, format string }

// AddLogFlags defines --log-level and --log-format on fs.
func AddLogFlags(fs *flag.FlagSet) *LogFlags {
	f := &LogFlags{}
	fs.StringVar(&f.level, "log-level", "", "")
	fs.StringVar(&f.format, "log-format", "json", "")
	return f
}

// Logger returns the logger the flags ask for, writing to e.Stderr.
func (f *LogFlags) Logger(e *Env) (*slog.Logger, error) {
	name := f.level
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
	o := &slog.HandlerOptions{Level: lv}
	switch f.format {
	case "json":
		return slog.New(slog.NewJSONHandler(e.Stderr, o)), nil
	case "text":
		return slog.New(slog.NewTextHandler(e.Stderr, o)), nil
	}
	return nil, Usagef("--log-format %q is not json or text", f.format)
}
