package cli

import (
	"flag"

	"github.com/airlockfw/airlock/internal/jsonlog"
)

// LogLevelEnv is read when --log-level is not given.
const LogLevelEnv = "AIRLOCK_LOG_LEVEL"

// LogLevel is the --log-level flag of a long-running command (serve,
// agent). Their logs are JSON objects, one a line, with time, level and msg:
// log/slog's JSONHandler on the server, its shape written by the smaller
// internal/jsonlog on devices.
type LogLevel string

// AddLogLevel defines --log-level on fs.
func AddLogLevel(fs *flag.FlagSet) *LogLevel {
	l := new(LogLevel)
	fs.StringVar((*string)(l), "log-level", "", "")
	return l
}

// Level returns the flag's level, else $AIRLOCK_LOG_LEVEL's, else info.
// Its values are log/slog's (slog.Level(lv)).
func (l *LogLevel) Level(e *Env) (jsonlog.Level, error) {
	name := string(*l)
	if name == "" {
		name = e.Getenv(LogLevelEnv)
	}
	lv, err := jsonlog.ParseLevel(name)
	if err != nil {
		return 0, Usagef("--log-level %q is not debug, info, warn or error", name)
	}
	return lv, nil
}

// Logger returns the JSON logger at Level writing to e.Stderr.
func (l *LogLevel) Logger(e *Env) (*jsonlog.Logger, error) {
	lv, err := l.Level(e)
	if err != nil {
		return nil, err
	}
	return jsonlog.New(e.Stderr, lv), nil
}
