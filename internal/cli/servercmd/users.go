package servercmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"rsc.io/qr"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
)

// qrQuietZone is the light border around a terminal QR code, in modules.
const qrQuietZone = 2

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "server user add",
			Summary: "create an admin API user with a role (prints its first token once)",
			Usage: `Usage: airlock server user add --data DIR [--db DSN] --name N --role ROLE

Creates a user of the admin API and prints its first API token once on
stdout (only its SHA-256 hash is stored). Then enroll the user's second
factor with 'airlock server user totp': every state-changing request needs a
TOTP code. Roles (docs/security.md):

  viewer           read fleet state, releases and /metrics
  operator         + deploy approved releases, create enrollment tokens
  release_manager  + register published releases for deployment
  approver         + approve releases registered by someone else
  admin            everything, including users and tokens

This works on the database directly (bootstrap, recovery); the admin API
equivalent is POST /api/v1/admin/users.

Flags:
  --data DIR               server data directory (default database DIR/airlock.db)
  --db DSN                 sqlite:///path, a path, or postgres://...
  --name N                 login name, [A-Za-z0-9._-] (required)
  --role ROLE              one of the roles above (required)

Example:
  airlock server user add --data /var/lib/airlock --name alice --role approver
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data, dsn := fs.String("data", "", ""), fs.String("db", "", "")
				name, role := fs.String("name", "", ""), fs.String("role", "", "")
				return func(e *cli.Env, args []string) error {
					if err := needStoreFlags(args, *data, *dsn, *name); err != nil {
						return err
					}
					if !server.ValidRole(*role) {
						return cli.Usagef("--role must be one of %s", strings.Join(server.Roles, ", "))
					}
					db, err := server.OpenStore(e.Ctx, *data, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					u, tok, _, err := server.CreateUser(e.Ctx, db, *name, *role, time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, tok)
					e.Printf("airlock: created %s user %q (%s); its token is shown only once\n", u.Role, u.Name, u.ID)
					e.Printf("airlock: hint: enroll TOTP with 'airlock server user totp --data %s --name %s'\n", *data, u.Name)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "server user totp",
			Summary: "enroll a user's TOTP second factor (prints a QR code and otpauth URI)",
			Usage: `Usage: airlock server user totp --data DIR [--db DSN] [--kek-file F] --name N

Gives the user a new TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s), replacing
any previous one, and prints a QR code to scan with an authenticator app and
the otpauth:// URI. The secret is stored only sealed with the server's
key-encryption key. Anyone who sees the QR code or URI can make codes: show
it only to the user.

Flags:
  --data DIR               server data directory (default database DIR/airlock.db)
  --db DSN                 sqlite:///path, a path, or postgres://...
  --kek-file F             key-encryption key (default DIR/kek.key; must be the
                           one the server uses)
  --name N                 the user (required)

Example:
  airlock server user totp --data /var/lib/airlock --name alice
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data, dsn := fs.String("data", "", ""), fs.String("db", "", "")
				kekFile, name := fs.String("kek-file", "", ""), fs.String("name", "", "")
				return func(e *cli.Env, args []string) error {
					if err := needStoreFlags(args, *data, *dsn, *name); err != nil {
						return err
					}
					if *kekFile == "" {
						if *data == "" {
							return cli.Usagef("--kek-file is required with --db and no --data")
						}
						*kekFile = filepath.Join(*data, server.KEKFile)
					}
					db, err := server.OpenStore(e.Ctx, *data, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					kek, created, err := server.LoadOrCreateKEK(*kekFile)
					if err != nil {
						return err
					}
					if created {
						e.Printf("airlock: created key-encryption key %s; back it up, and in production keep it off the database's volume\n", *kekFile)
					}
					if err := server.CheckKEK(e.Ctx, db, kek, time.Now()); err != nil {
						return err
					}
					uri, err := server.EnrollTOTP(e.Ctx, db, kek, *name)
					if err != nil {
						return userErr(err, *name)
					}
					if err := writeQR(e.Stdout, uri); err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, uri)
					e.Printf("airlock: enrolled TOTP for %q; scan the QR code or import the URI, then send codes as %s\n", *name, server.TOTPHeader)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "server user disable",
			Summary: "disable a user (revokes all its tokens and pending approvals)",
			Usage: `Usage: airlock server user disable --data DIR [--db DSN] --name N

Disables the user: every token of the user stops working at once, and the
user's approvals no longer count toward a release's threshold. Users are
never deleted, so the audit trail keeps its names.

Example:
  airlock server user disable --data /var/lib/airlock --name alice
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data, dsn, name := fs.String("data", "", ""), fs.String("db", "", ""), fs.String("name", "", "")
				return func(e *cli.Env, args []string) error {
					if err := needStoreFlags(args, *data, *dsn, *name); err != nil {
						return err
					}
					db, err := server.OpenStore(e.Ctx, *data, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					u, err := db.GetUserByName(e.Ctx, *name)
					if err != nil {
						return userErr(err, *name)
					}
					if err := db.DisableUser(e.Ctx, u.ID, time.Now()); err != nil {
						return err
					}
					e.Printf("airlock: disabled user %q (%s)\n", u.Name, u.ID)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "server user list",
			Summary: "list admin API users, roles and second-factor state",
			Usage: `Usage: airlock server user list --data DIR [--db DSN] [--json]

Prints one line per user: name, role, state (enabled/disabled), whether
TOTP is enrolled, and the user ID.

Flags:
  --data DIR               server data directory
  --db DSN                 the server's store (default: the one DIR records)
  --json                   print a JSON array of {name, role, state, totp, id}
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data, dsn := fs.String("data", "", ""), fs.String("db", "", "")
				asJSON := fs.Bool("json", false, "")
				return func(e *cli.Env, args []string) error {
					if err := needStoreFlags(args, *data, *dsn, "-"); err != nil {
						return err
					}
					db, err := server.OpenStore(e.Ctx, *data, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					return listUsers(e.Ctx, e.Stdout, db, *asJSON)
				}
			},
		},
	)
}

// needStoreFlags checks the flags every user command shares.
func needStoreFlags(args []string, data, dsn, name string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	if data == "" && dsn == "" {
		return cli.Usagef("--data or --db is required")
	}
	if name == "" {
		return cli.Usagef("--name is required")
	}
	return nil
}

func userErr(err error, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user named %q (see 'airlock server user list')", name)
	}
	return err
}

// userJSON is one user in `server user list --json`.
type userJSON struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"` // enabled or disabled
	TOTP  bool   `json:"totp"`  // a second factor is enrolled
	ID    string `json:"id"`
}

func listUsers(ctx context.Context, w io.Writer, db store.Store, asJSON bool) error {
	users, err := db.ListUsers(ctx)
	if err != nil {
		return err
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		state := "enabled"
		if u.Disabled() {
			state = "disabled"
		}
		out = append(out, userJSON{Name: u.Name, Role: u.Role, State: state, TOTP: u.TOTPSecret != nil, ID: u.ID})
	}
	if asJSON {
		return cli.WriteJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tTOTP\tID")
	for _, u := range out {
		totp := "no"
		if u.TOTP {
			totp = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, u.State, totp, u.ID)
	}
	return tw.Flush()
}

// writeQR renders text as a QR code with Unicode half blocks, two module
// rows per line, light modules drawn as blocks (like `qrencode -t UTF8`,
// for terminals with a dark background).
func writeQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return fmt.Errorf("failed to encode QR code: %w", err)
	}
	light := func(x, y int) bool {
		if x < 0 || y < 0 || x >= code.Size || y >= code.Size {
			return true // quiet zone
		}
		return !code.Black(x, y)
	}
	var b strings.Builder
	for y := -qrQuietZone; y < code.Size+qrQuietZone; y += 2 {
		for x := -qrQuietZone; x < code.Size+qrQuietZone; x++ {
			top, bottom := light(x, y), light(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}
