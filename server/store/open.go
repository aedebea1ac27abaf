package store

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Dialects selected by a DSN.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Open opens (creating and migrating as needed) the store named by dsn:
//
//   - "sqlite:///path/to/file.db", "sqlite://relative.db" or a plain path
//     select SQLite. The file is created with mode 0600 if missing; the path
//     may not contain '?', '#' or NUL.
//   - "postgres://..." or "postgresql://..." select PostgreSQL through pgx;
//     the DSN is passed to pgx (pool settings such as pool_max_conns apply).
//
// Open applies pending schema migrations in one transaction and fails with
// ErrSchemaTooNew if the database was migrated by a newer binary.
func Open(ctx context.Context, dsn string) (Store, error) {
	dialect, target, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	switch dialect {
	case DialectSQLite:
		return openSQLite(ctx, target)
	default:
		return openPostgres(ctx, target)
	}
}

// ParseDSN returns the dialect a DSN selects and what is passed to the
// driver: the file path for SQLite, the DSN itself for PostgreSQL. Errors
// wrap ErrUnsupportedDSN and never echo a PostgreSQL DSN, which may hold a
// password.
func ParseDSN(dsn string) (dialect, target string, err error) {
	if dsn == "" {
		return "", "", fmt.Errorf("%w: empty", ErrUnsupportedDSN)
	}
	if len(dsn) > MaxDSNLen {
		return "", "", fmt.Errorf("%w: %d bytes exceeds limit %d", ErrUnsupportedDSN, len(dsn), MaxDSNLen)
	}
	if !utf8.ValidString(dsn) || strings.ContainsRune(dsn, 0) {
		return "", "", fmt.Errorf("%w: not valid UTF-8 or contains NUL", ErrUnsupportedDSN)
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return DialectPostgres, dsn, nil
	}
	path, ok := strings.CutPrefix(dsn, "sqlite://")
	if !ok {
		if scheme, _, found := strings.Cut(dsn, "://"); found {
			return "", "", fmt.Errorf("%w: scheme %q is not sqlite or postgres", ErrUnsupportedDSN, truncate(scheme))
		}
		path = dsn
	}
	switch {
	case path == "":
		return "", "", fmt.Errorf("%w: empty sqlite path", ErrUnsupportedDSN)
	case strings.ContainsAny(path, "?#"):
		return "", "", fmt.Errorf("%w: sqlite path %q contains '?' or '#'", ErrUnsupportedDSN, truncate(path))
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return "", "", fmt.Errorf("%w: sqlite path %q must name a file", ErrUnsupportedDSN, truncate(path))
	}
	return DialectSQLite, path, nil
}
