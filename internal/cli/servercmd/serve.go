package servercmd

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/objstore/s3store"
	"github.com/airlockfw/airlock/internal/sdnotify"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
)

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "serve",
			Summary: "run the HTTPS update server (repository, device API, admin API)",
			Usage: `Usage: airlock serve --data DIR (--repo REPO | --storage s3://BUCKET[/PREFIX])
                     [--s3-endpoint URL] [--s3-ca F] [--s3-insecure-loopback-http]
                     [--listen ADDR] [--tls-cert F --tls-key F]
                     [--db DSN] [--manufacturing-ca F] [--hostname H]... [--public-url URL]
                     [--poll-interval 60s] [--metrics-listen ADDR] [--shutdown-timeout 30s]
                     [--kek-file F] [--prod-approvals 2] [--session-ttl 15m]
                     [--audit-dir DIR --audit-key F]
                     [--rollout-tick 10s] [--director-timestamp-expiry 1h] [--director-expiry 24h]
                     [--log-level info]

Serves, over HTTPS only (TLS 1.2+):
  /repo/metadata/, /repo/targets/   the repository's public TUF files and payloads
                                    (GET/HEAD, Range requests)
  /api/v1/enroll, checkin, status, device
                                    the device API (mTLS after enrollment)
  /api/v1/admin/..., /metrics       the admin API (user bearer token; a TOTP
                                    code in X-Airlock-TOTP for every change)

Without --tls-cert the server creates a local CA in DIR (ca.pem, ca.key) and a
server certificate for localhost, 127.0.0.1, ::1 and every --hostname, and
logs the CA's SHA-256 fingerprint for devices to pin. Devices enroll with a
token ('airlock server enroll-token create') or a factory certificate from
--manufacturing-ca, and get a client certificate from the device CA in DIR
(device-ca.pem). Logs, start-up lines included, are JSON objects on stderr,
one a line, with time, level and msg. SIGINT or SIGTERM stops accepting
connections and lets requests in flight finish.

Under systemd with Type=notify ($NOTIFY_SOCKET) the server sends READY=1
once it serves, STOPPING=1 when it shuts down and, with WatchdogSec=
($WATCHDOG_USEC), WATCHDOG=1 from its serving loop at half that interval
(docs/server.md, docs/examples/airlock-server.service).

Flags:
  --data DIR               server state: CAs, keys (0600), airlock.db (required)
  --repo REPO              repository directory made by 'airlock repo init'
  --storage s3://BUCKET[/PREFIX]
                           serve the repository from this bucket instead of --repo
                           (filled by 'airlock repo push'; replicas can share it).
                           Credentials and region: AWS_ACCESS_KEY_ID,
                           AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
  --s3-endpoint URL        S3 server, https://host[:port] (default s3.amazonaws.com)
  --s3-ca F                PEM CA certificates for the S3 endpoint (default: system roots)
  --s3-insecure-loopback-http
                           allow an http:// S3 endpoint on a loopback address (tests)
  --listen ADDR            HTTPS address (default 127.0.0.1:8443)
  --tls-cert F             operator certificate chain (PEM); re-read when it changes
  --tls-key F              its private key (PEM); with --tls-cert
  --db DSN                 sqlite:///path, a path, or postgres://... (default DIR/airlock.db)
  --manufacturing-ca F     PEM CA(s) whose device certificates may enroll
                           (default DIR/manufacturing-ca.pem if it exists)
  --hostname H             extra DNS name or IP for the server certificate (repeatable)
  --public-url URL         base URL devices fetch the repository from
                           (default https://<host the device used>)
  --poll-interval D        check-in interval told to devices (default 60s)
  --metrics-listen ADDR    also serve /metrics without a token on this loopback
                           address over plain HTTP
  --shutdown-timeout D     how long in-flight requests may take at shutdown (default 30s)
  --kek-file F             key-encryption key sealing secrets at rest (default
                           DIR/kek.key, created 0600); in production keep it on
                           another volume or pass a systemd credential
  --prod-approvals N       distinct approvers a "prod" release needs before it can
                           be deployed (default 2)
  --session-ttl D          lifetime of an admin session (airlock login), also the
                           longest a client may ask for (default 15m, at most 12h)
  --audit-dir DIR          append security events (logins, approvals, deployments,
                           rollout transitions, device updates) to the
                           tamper-evident audit log in DIR; events are first
                           committed to the database with the change they
                           describe, then copied to the log by the one
                           server holding DIR (replicas sharing DIR take over
                           from each other); without it a server only
                           writes them to the database
  --audit-key F            Ed25519 key signing the audit log's checkpoints
                           (created if missing); with --audit-dir
  --rollout-tick D         how often rollouts are re-counted, silent devices timed
                           out and health gates applied (default 10s)
  --director-timestamp-expiry D
                           lifetime of a device's director timestamp (default 1h)
  --director-expiry D      lifetime of a device's director snapshot and targets
                           (default 24h)
  --log-level L            debug, info, warn or error (default $AIRLOCK_LOG_LEVEL,
                           else info)

Users and roles: 'airlock server user add', 'airlock server user totp',
docs/security.md.

Example:
  airlock serve --data /var/lib/airlock --repo /srv/airlock/repo \
      --listen 0.0.0.0:8443 --hostname updates.example.com
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				var cfg server.Config
				var hostnames cli.StringList
				fs.StringVar(&cfg.DataDir, "data", "", "")
				fs.StringVar(&cfg.RepoDir, "repo", "", "")
				storage := fs.String("storage", "", "")
				var so s3store.URLOptions
				fs.StringVar(&so.Endpoint, "s3-endpoint", "", "")
				fs.StringVar(&so.CAFile, "s3-ca", "", "")
				fs.BoolVar(&so.InsecureLoopbackHTTP, "s3-insecure-loopback-http", false, "")
				fs.StringVar(&cfg.Listen, "listen", server.DefaultListen, "")
				fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "")
				fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "")
				dsn := fs.String("db", "", "")
				fs.StringVar(&cfg.ManufacturingCAFile, "manufacturing-ca", "", "")
				fs.Var(&hostnames, "hostname", "")
				fs.StringVar(&cfg.PublicURL, "public-url", "", "")
				fs.DurationVar(&cfg.PollInterval, "poll-interval", server.DefaultPollInterval, "")
				fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "")
				fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "")
				fs.StringVar(&cfg.KEKFile, "kek-file", "", "")
				fs.IntVar(&cfg.ProdApprovals, "prod-approvals", server.DefaultProdApprovals, "")
				fs.DurationVar(&cfg.SessionTTL, "session-ttl", server.DefaultSessionTTL, "")
				auditDir, auditKey := fs.String("audit-dir", "", ""), fs.String("audit-key", "", "")
				fs.DurationVar(&cfg.RolloutTick, "rollout-tick", server.DefaultRolloutTick, "")
				fs.DurationVar(&cfg.DirectorTimestampExpiry, "director-timestamp-expiry", server.DefaultDirectorTimestampExpiry, "")
				fs.DurationVar(&cfg.DirectorExpiry, "director-expiry", server.DefaultDirectorExpiry, "")
				logLevel := cli.AddLogLevel(fs)
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if cfg.DataDir == "" || (cfg.RepoDir == "") == (*storage == "") {
						return cli.Usagef("--data and one of --repo and --storage are required")
					}
					if *storage != "" {
						if _, _, err := s3store.ParseURL(*storage); err != nil {
							return cli.Usagef("--storage: %v", err)
						}
					}
					if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
						return cli.Usagef("--tls-cert and --tls-key go together")
					}
					if cfg.PollInterval < server.MinPollInterval || cfg.PollInterval > server.MaxPollInterval {
						return cli.Usagef("--poll-interval must be between %v and %v", server.MinPollInterval, server.MaxPollInterval)
					}
					if cfg.ProdApprovals < 1 || cfg.ProdApprovals > server.MaxProdApprovals {
						return cli.Usagef("--prod-approvals must be between 1 and %d", server.MaxProdApprovals)
					}
					if cfg.SessionTTL < server.MinSessionTTL || cfg.SessionTTL > server.MaxSessionTTL {
						return cli.Usagef("--session-ttl must be between %v and %v", server.MinSessionTTL, server.MaxSessionTTL)
					}
					if cfg.RolloutTick < server.MinRolloutTick || cfg.RolloutTick > server.MaxRolloutTick {
						return cli.Usagef("--rollout-tick must be between %v and %v", server.MinRolloutTick, server.MaxRolloutTick)
					}
					for _, d := range []time.Duration{cfg.DirectorTimestampExpiry, cfg.DirectorExpiry} {
						if d < server.MinDirectorExpiry || d > server.MaxDirectorExpiry {
							return cli.Usagef("director expiries must be between %v and %v", server.MinDirectorExpiry, server.MaxDirectorExpiry)
						}
					}
					if (*auditDir == "") != (*auditKey == "") {
						return cli.Usagef("--audit-dir and --audit-key go together")
					}
					cfg.Hostnames = hostnames
					lv, err := logLevel.Level(e)
					if err != nil {
						return err
					}
					log := slog.New(slog.NewJSONHandler(e.Stderr, &slog.HandlerOptions{Level: slog.Level(lv)}))
					cfg.Logger = log
					if err := notifyConfig(e, &cfg); err != nil {
						return err
					}
					if *auditDir != "" {
						open := func() (*audit.Log, error) { return audit.OpenWithKey(*auditDir, *auditKey, audit.Options{}) }
						// Fail now on a bad key or a log that does not verify;
						// a log another replica holds is taken over when it
						// lets go.
						alog, err := open()
						if err != nil && !errors.Is(err, audit.ErrLocked) {
							return err
						}
						// The log opened (and verified) here is the drainer's
						// first; it opens the directory again only after
						// letting go of it, so a large log is read once at
						// start-up. The drainer is the only caller.
						cfg.AuditOpen = func() (*audit.Log, error) {
							if l := alog; l != nil {
								alog = nil
								return l, nil
							}
							return open()
						}
						cfg.AuditDir = *auditDir
					} else {
						log.Warn("no --audit-dir: audit events wait in the database's audit outbox for a server with --audit-dir")
					}
					db, err := server.OpenStore(e.Ctx, cfg.DataDir, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					cfg.Audit = server.AuditOutbox(db, log)
					cfg.DB = db
					if *storage != "" {
						st, err := s3store.OpenURL(e.Ctx, *storage, so, e.Getenv)
						if err != nil {
							return err
						}
						cfg.RepoStore = st
						log.Info("repository storage", "store", st.String())
					}
					srv, err := server.New(cfg)
					if err != nil {
						return err
					}
					if srv.CAPEM() != nil {
						log.Info("server CA", "path", filepath.Join(cfg.DataDir, server.CAFile), "sha256", srv.CAFingerprint())
					} else {
						log.Info("server certificate", "path", cfg.TLSCertFile, "sha256", srv.CAFingerprint())
					}
					log.Info("listening", "url", "https://"+srv.Addr().String())
					if a := srv.MetricsAddr(); a != nil {
						log.Info("metrics", "url", "http://"+a.String()+"/metrics")
					}
					return srv.Serve(e.Ctx)
				}
			},
		},
		&cli.Command{
			Name:    "server token create",
			Summary: "create an admin API token (printed once)",
			Usage: `Usage: airlock server token create --data DIR [--db DSN] --user U [--name LABEL]
       airlock server token create --data DIR [--db DSN] --name N [--role ROLE]

Creates a token for the admin API and /metrics and prints it once on stdout;
only its SHA-256 hash is stored. Send it as "Authorization: Bearer TOKEN".
With --user the token belongs to that existing user (--name labels it).
Without --user, --name is a user name: the user is created with --role if
it does not exist. Roles: viewer, operator, release_manager, approver, admin
(docs/security.md).

Flags:
  --data DIR               server data directory (default database DIR/airlock.db)
  --db DSN                 sqlite:///path, a path, or postgres://...
  --user U                 the user the token is for
  --name N                 token label with --user; else the user name (required)
  --role ROLE              role of a new user without --user (default admin)

Example:
  airlock server token create --data /var/lib/airlock --user alice --name laptop
  airlock server token create --data /var/lib/airlock --name prometheus --role viewer
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data := fs.String("data", "", "")
				dsn := fs.String("db", "", "")
				name := fs.String("name", "", "")
				role := fs.String("role", "", "")
				user := fs.String("user", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *data == "" && *dsn == "" {
						return cli.Usagef("--data or --db is required")
					}
					if *name == "" && *user == "" {
						return cli.Usagef("--name is required")
					}
					if *user != "" && *role != "" {
						return cli.Usagef("--role applies to a new user; --user names an existing one")
					}
					if *role == "" {
						*role = server.RoleAdmin
					}
					if !server.ValidRole(*role) {
						return cli.Usagef("--role must be one of %s", strings.Join(server.Roles, ", "))
					}
					db, err := server.OpenStore(e.Ctx, *data, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					var tok string
					var rec store.AdminToken
					if *user != "" {
						u, uerr := db.GetUserByName(e.Ctx, *user)
						if uerr != nil {
							return userErr(uerr, *user)
						}
						if *name == "" {
							*name = "token"
						}
						tok, rec, err = server.CreateUserToken(e.Ctx, db, u.ID, *name, time.Now())
					} else {
						tok, rec, err = server.CreateAdminToken(e.Ctx, db, *name, *role, time.Now())
					}
					if err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, tok)
					e.Printf("airlock: created %s token %s (%q); it is shown only once\n", rec.Role, rec.ID, rec.Name)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "server enroll-token create",
			Summary: "create a device enrollment token (printed once)",
			Usage: `Usage: airlock server enroll-token create --data DIR [--db DSN] [--uses N] [--ttl 24h]
                                         [--product P] [--model M]

Creates a token devices use once each to enroll (POST /api/v1/enroll) and
prints it once on stdout; only its SHA-256 hash is stored.

Flags:
  --data DIR               server data directory (default database DIR/airlock.db)
  --db DSN                 sqlite:///path, a path, or postgres://...
  --uses N                 how many devices may enroll with it (default 1)
  --ttl D                  how long it is valid (default 24h, at most 8760h)
  --product P              only devices of this product may use it
  --model M                only devices of this model may use it

Example:
  airlock server enroll-token create --data /var/lib/airlock --uses 500 --ttl 72h \
      --product acme/router-x1
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data := fs.String("data", "", "")
				dsn := fs.String("db", "", "")
				uses := fs.Int("uses", 1, "")
				ttl := fs.Duration("ttl", 24*time.Hour, "")
				product := fs.String("product", "", "")
				model := fs.String("model", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *data == "" && *dsn == "" {
						return cli.Usagef("--data or --db is required")
					}
					if *uses < 1 || *uses > store.MaxTokenUses {
						return cli.Usagef("--uses must be between 1 and %d", store.MaxTokenUses)
					}
					if *ttl < time.Second || *ttl > server.MaxEnrollmentTokenTTL {
						return cli.Usagef("--ttl must be between 1s and %v", server.MaxEnrollmentTokenTTL)
					}
					db, err := server.OpenStore(e.Ctx, *data, *dsn)
					if err != nil {
						return err
					}
					defer db.Close()
					tok, rec, err := server.CreateEnrollmentToken(e.Ctx, db, server.EnrollmentTokenOptions{
						Product: *product, Model: *model, Uses: *uses, TTL: *ttl,
					}, time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, tok)
					e.Printf("airlock: created enrollment token %s: %d use(s), expires %s; it is shown only once\n",
						rec.ID, rec.UsesLeft, rec.ExpiresAt.Format(time.RFC3339))
					return nil
				}
			},
		},
	)
}

// notifyConfig sets cfg's systemd notification from the environment
// ($NOTIFY_SOCKET, $WATCHDOG_USEC; internal/sdnotify).
func notifyConfig(e *cli.Env, cfg *server.Config) error {
	n, err := sdnotify.New(e.Getenv)
	if err != nil || n == nil {
		return err
	}
	if cfg.WatchdogInterval, err = sdnotify.WatchdogInterval(e.Getenv); err != nil {
		return err
	}
	log := cfg.Logger
	cfg.Notify = func(state string) {
		if err := n.Notify(state); err != nil {
			log.Warn("systemd notification failed", "state", state, "err", err)
		}
	}
	return nil
}
