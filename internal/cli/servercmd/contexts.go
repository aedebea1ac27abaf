package servercmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
)

// The context file remembers, per named context, an update server, the CA
// to trust for it and the session `airlock login` obtained there, so admin
// commands need neither flags nor a TOTP code until the session expires.
//
// Threat model: the file holds session credentials, secrets that act as
// the user for their lifetime (15 minutes by default). It lives in the
// user's configuration directory (0700), is written 0600 by a temp file
// and a rename, and is refused when group or others may read it. It is
// parsed strictly within named limits, as any file an attacker might have
// planted. A session is sent only to the server it was issued by: a
// command aimed elsewhere (--server, AIRLOCK_SERVER) ignores the context.
const (
	// ContextFileName is the file under the configuration directory.
	ContextFileName = "contexts.json"
	// MaxContextFileSize bounds the context file.
	MaxContextFileSize = 256 << 10
	// MaxContexts bounds the contexts in the file.
	MaxContexts = 100
	// MaxContextNameLen bounds a context name ([A-Za-z0-9._-]).
	MaxContextNameLen = 64
	// DefaultContext is the context login writes without --context.
	DefaultContext = "default"
	// MaxCAFileSize bounds --ca and AIRLOCK_CA.
	MaxCAFileSize = 1 << 20
)

// Environment variables of the admin commands (flags win over them, they
// win over the context).
const (
	EnvServer    = "AIRLOCK_SERVER"
	EnvCA        = "AIRLOCK_CA"
	EnvTokenFile = "AIRLOCK_TOKEN_FILE"
	EnvTOTP      = "AIRLOCK_TOTP"
	EnvContext   = "AIRLOCK_CONTEXT"
)

// adminContext is one named context.
type adminContext struct {
	Server string `json:"server"`
	CA     string `json:"ca,omitempty"` // absolute path of a PEM file; "" means the system roots
	// The session of the last login; all empty after logout.
	Session   string    `json:"session,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	User      string    `json:"user,omitempty"`
	Role      string    `json:"role,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// contextFile is the JSON document of the context file.
type contextFile struct {
	Current  string                   `json:"current,omitempty"`
	Contexts map[string]*adminContext `json:"contexts"`
}

// contextFilePath returns the context file's path: under
// $XDG_CONFIG_HOME/airlock, else $HOME/.config/airlock. It reads the
// environment through getenv only.
func contextFilePath(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "airlock", ContextFileName), nil
	}
	if h := getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".config", "airlock", ContextFileName), nil
	}
	return "", errors.New("no configuration directory for the context file: set XDG_CONFIG_HOME or HOME")
}

func checkContextName(name string) error {
	if name == "" || len(name) > MaxContextNameLen {
		return fmt.Errorf("context name %q must be 1 to %d characters", name, MaxContextNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("context name %q may hold only [A-Za-z0-9._-]", name)
		}
	}
	return nil
}

// parseContextFile decodes a context file strictly: one JSON object, no
// unknown fields or duplicate keys, at most MaxContexts valid contexts, and
// a current context that exists.
func parseContextFile(data []byte) (*contextFile, error) {
	if len(data) > MaxContextFileSize {
		return nil, fmt.Errorf("%d bytes exceeds the limit of %d", len(data), MaxContextFileSize)
	}
	var f contextFile
	if err := (strictjson.Limits{Size: MaxContextFileSize, Depth: 3}).Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if len(f.Contexts) > MaxContexts {
		return nil, fmt.Errorf("%d contexts exceed the limit of %d", len(f.Contexts), MaxContexts)
	}
	if f.Contexts == nil {
		f.Contexts = map[string]*adminContext{}
	}
	for name, c := range f.Contexts {
		if err := checkContextName(name); err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("context %q is null", name)
		}
		if err := checkServerURL(c.Server); err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		if c.CA != "" && !filepath.IsAbs(c.CA) {
			return nil, fmt.Errorf("context %q: CA path %q is not absolute", name, c.CA)
		}
		if c.Session != "" && !wellFormedSession(c.Session) {
			return nil, fmt.Errorf("context %q: malformed session", name)
		}
		if c.Session != "" && c.ExpiresAt.IsZero() {
			return nil, fmt.Errorf("context %q: session without expiry", name)
		}
	}
	if f.Current != "" && f.Contexts[f.Current] == nil {
		return nil, fmt.Errorf("current context %q does not exist", f.Current)
	}
	return &f, nil
}

// marshal returns the file's JSON; parseContextFile accepts it.
func (f *contextFile) marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// loadContexts reads the context file at path; a missing file is an empty
// one. A file group or others may access is refused: it holds secrets.
func loadContexts(path string) (*contextFile, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &contextFile{Contexts: map[string]*adminContext{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the context file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("context file %s holds session secrets but its mode is %04o: chmod 600 it (or delete it and log in again)", path, fi.Mode().Perm())
	}
	data, err := durable.ReadFile(durable.OS, path, MaxContextFileSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read the context file: %w", err)
	}
	f, err := parseContextFile(data)
	if err != nil {
		return nil, fmt.Errorf("context file %s: %w", path, err)
	}
	return f, nil
}

// saveContexts writes the context file crash-safely (temp file 0600,
// fsync, rename, fsync of the directory), creating its directory 0700.
func saveContexts(path string, f *contextFile) error {
	data, err := f.marshal()
	if err != nil {
		return err
	}
	if _, err := parseContextFile(data); err != nil {
		return fmt.Errorf("internal error: the context file would not parse: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := durable.WriteFile(durable.OS, path, data, 0o600); err != nil {
		return fmt.Errorf("failed to write the context file: %w", err)
	}
	return nil
}

// names returns the context names, sorted.
func (f *contextFile) names() []string {
	var out []string
	for n := range f.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// selectContext returns the name of the context to use and where the
// choice came from: flag, then AIRLOCK_CONTEXT, then the file's current
// context ("" if none).
func selectContext(flag string, getenv func(string) string, f *contextFile) (name, source string) {
	switch {
	case flag != "":
		return flag, "--context"
	case getenv(EnvContext) != "":
		return getenv(EnvContext), EnvContext
	case f != nil && f.Current != "":
		return f.Current, "the current context"
	}
	return "", ""
}

// sessionSecretLen is the length of a session's secret after
// adminapi.SessionPrefix: 256 bits in unpadded base64url.
const sessionSecretLen = 43

// wellFormedSession reports whether s has the form of a session credential
// (the server checks the rest).
func wellFormedSession(s string) bool {
	return len(s) == len(adminapi.SessionPrefix)+sessionSecretLen && strings.HasPrefix(s, adminapi.SessionPrefix)
}

// sessionProblem reports why a context's session cannot be used at now, or
// "" if it can.
func (c *adminContext) sessionProblem(name string, now time.Time) string {
	switch {
	case c.Session == "":
		return fmt.Sprintf("context %q has no session (logged out)", name)
	case !now.Before(c.ExpiresAt):
		return fmt.Sprintf("the session of context %q expired at %s", name, c.ExpiresAt.Local().Format(time.RFC3339))
	}
	return ""
}

// loginHint is how to get a session for context name.
func loginHint(name string) string {
	if name == DefaultContext || name == "" {
		return "airlock login"
	}
	return "airlock login --context " + name
}
