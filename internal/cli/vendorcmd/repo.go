package vendorcmd

import (
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
)

func init() {
	commands = append(commands, repoInitCmd, repoDelegateCmd, repoPublishCmd, repoTimestampCmd, repoRenewCmd, repoRotateCmd, repoRevokeCmd, repoStatusCmd, repoImportCmd)
}

// checkKeys refuses key paths inside the repository directory.
func checkKeys(dir string, paths ...string) error {
	for _, p := range paths {
		if err := repo.CheckKeyPath(dir, p); err != nil {
			return err
		}
	}
	return nil
}

// signersIn loads signing keys after checking they are outside dir.
func signersIn(dir string, paths []string, passFile string) ([]crypto.Signer, error) {
	if err := checkKeys(dir, paths...); err != nil {
		return nil, err
	}
	return loadSigners(paths, passFile)
}

func signerIn(dir, path, passFile string) (crypto.Signer, error) {
	s, err := signersIn(dir, []string{path}, passFile)
	if err != nil {
		return nil, err
	}
	return s[0], nil
}

func durationFlag(fs *flag.FlagSet, name string, d *repo.Duration) {
	fs.Func(name, "", func(s string) error {
		v, err := repo.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	})
}

var repoInitCmd = &cli.Command{
	Name:    "repo init",
	Summary: "create a TUF image repository (root k-of-n, targets, snapshot, timestamp)",
	Usage: `Usage: airlock repo init --dir REPO --root-key KEY... [--root-threshold N]
         --targets-key KEY --snapshot-key KEY --timestamp-key KEY
         [--root-expires 365d] [--targets-expires 180d] [--snapshot-expires 7d]
         [--timestamp-expires 1d] [--product-expires 180d]
         [--online-snapshot-key PATH] [--online-timestamp-key PATH]
         [--env dev|staging|prod] [--keyring FILE] [--audit-key PATH]
         [--passphrase-file FILE]

Creates a new repository in REPO (which must not exist or be empty): root,
targets, snapshot and timestamp metadata version 1, all signed, consistent
snapshots on. REPO/public/ is what you serve; REPO/staging/ holds pending
work; REPO/airlock-repo.json the configuration. See docs/repository.md.

Root keys: give --root-key once per root key (n keys). A private key file
(PKCS#8 PEM) both counts toward n and signs root version 1; a public key file
(.pub) only counts toward n, so a root key holder who is not present can be
enrolled with their public key. At least --root-threshold (k, default 1) of
the root keys must be given as private keys.

Targets, snapshot and timestamp keys are private key files (they sign their
role's version 1). Use a separate key for every role; the snapshot and
timestamp keys are the online keys a server holds.

No key may lie inside REPO (checked after resolving symlinks): the repository
holds public data only.

Environments: development, staging and production are separate trust roots.
--env (default dev) is recorded in the signed root metadata and in every
release; a device provisioned with this root refuses metadata and releases of
any other environment. With --env given, every key of the repository is
registered for that environment in the keyring, and a key already registered
for another environment is refused.

Flags:
  --dir REPO                   repository directory to create
  --root-key KEY               root key, private (signs) or public (counts); repeatable
  --root-threshold N           signatures required on every root version (default 1)
  --targets-key KEY            private targets key
  --snapshot-key KEY           private snapshot key (default --online-snapshot-key)
  --timestamp-key KEY          private timestamp key (default --online-timestamp-key)
  --root-expires D             root expiry (Nd or Go duration, default 365d)
  --targets-expires D          targets expiry (default 180d)
  --snapshot-expires D         snapshot expiry (default 7d)
  --timestamp-expires D        timestamp expiry (default 1d)
  --product-expires D          product role expiry (default 180d)
  --online-snapshot-key PATH   record the default key of 'repo publish'
  --online-timestamp-key PATH  record the default key of 'repo publish' and 'repo timestamp'
  --env ENV                    trust environment: dev (default), staging or prod
  --keyring FILE               key environment registry (default $AIRLOCK_KEYRING or ~/.config/airlock/keyring.json)
  --audit-key PATH             keep a tamper-evident audit log in REPO/audit whose checkpoints this
                               Ed25519 key signs (created 0600 if absent; must lie outside REPO)
` + logFlagsUsage + `  --passphrase-file FILE       passphrase of encrypted private keys

Example (2-of-3 root, the third holder enrolled by public key):
  airlock repo init --dir /srv/fw-repo \
    --root-key ~/keys/root-1.pem --root-key /media/usb/root-2.pem \
    --root-key ~/enroll/root-3.pem.pub --root-threshold 2 \
    --targets-key ~/keys/targets.pem \
    --online-snapshot-key /etc/airlock/snapshot.pem \
    --online-timestamp-key /etc/airlock/timestamp.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		var rootKeys cli.StringList
		fs.Var(&rootKeys, "root-key", "")
		threshold := fs.Int("root-threshold", 1, "")
		targetsKey := fs.String("targets-key", "", "")
		snapKey := fs.String("snapshot-key", "", "")
		tsKey := fs.String("timestamp-key", "", "")
		onlineSnap := fs.String("online-snapshot-key", "", "")
		onlineTS := fs.String("online-timestamp-key", "", "")
		env := fs.String("env", "", "")
		keyring := fs.String("keyring", "", "")
		auditKey := fs.String("audit-key", "", "")
		logOpts := logFlags(fs, false)
		passFile := fs.String("passphrase-file", "", "")
		var exp repo.Expiry
		durationFlag(fs, "root-expires", &exp.Root)
		durationFlag(fs, "targets-expires", &exp.Targets)
		durationFlag(fs, "snapshot-expires", &exp.Snapshot)
		durationFlag(fs, "timestamp-expires", &exp.Timestamp)
		durationFlag(fs, "product-expires", &exp.Product)
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if *snapKey == "" {
				*snapKey = *onlineSnap
			}
			if *tsKey == "" {
				*tsKey = *onlineTS
			}
			if err := cli.NeedFlags("--dir", *dir, "--targets-key", *targetsKey, "--snapshot-key", *snapKey, "--timestamp-key", *tsKey); err != nil {
				return err
			}
			if len(rootKeys) == 0 {
				return cli.Usagef("--root-key is required")
			}
			if *threshold < 1 || *threshold > len(rootKeys) {
				return cli.Usagef("--root-threshold %d with %d root keys", *threshold, len(rootKeys))
			}
			if err := checkKeys(*dir, append([]string{*targetsKey, *snapKey, *tsKey, *onlineSnap, *onlineTS, *auditKey}, rootKeys...)...); err != nil {
				return err
			}
			if *env != "" {
				if err := keys.CheckEnvironment(*env); err != nil {
					return &cli.UsageError{Msg: err.Error()}
				}
			}
			opts := repo.InitOptions{RootThreshold: *threshold, Expires: exp, OnlineSnapshotKey: *onlineSnap, OnlineTimestampKey: *onlineTS, Environment: *env}
			for _, p := range rootKeys {
				if !keys.IsPrivate(p) {
					pub, err := keys.LoadPublic(p)
					if err != nil {
						return fmt.Errorf("root key %s: %w", p, err)
					}
					opts.RootKeys = append(opts.RootKeys, pub)
					continue
				}
				s, err := loadSigner(p, *passFile)
				if err != nil {
					return fmt.Errorf("root key %s: %w", p, err)
				}
				opts.RootKeys = append(opts.RootKeys, s.Public())
				opts.RootSigners = append(opts.RootSigners, s)
			}
			var err error
			if opts.Targets, err = loadSigner(*targetsKey, *passFile); err != nil {
				return fmt.Errorf("targets key: %w", err)
			}
			if opts.Snapshot, err = loadSigner(*snapKey, *passFile); err != nil {
				return fmt.Errorf("snapshot key: %w", err)
			}
			if opts.Timestamp, err = loadSigner(*tsKey, *passFile); err != nil {
				return fmt.Errorf("timestamp key: %w", err)
			}
			opts.Options = repoOptions(e, nil)
			if *env != "" {
				if opts.Keyring, err = keyringFor(e, *keyring); err != nil {
					return err
				}
			}
			opts.AuditKey = *auditKey
			if opts.Log, err = logOpts(*passFile); err != nil {
				return err
			}
			if opts.Log != nil && opts.Log.Key == nil {
				return cli.Usagef("--log-key is required with --log-origin, --witness and --witness-threshold")
			}
			r, err := repo.Init(*dir, opts)
			if err != nil {
				return err
			}
			e.Printf("airlock: created %s repository %s (root %d-of-%d); serve %s\n", r.Environment(), *dir, *threshold, len(rootKeys), r.PublicDir())
			e.Printf("airlock: hint: distribute %s/metadata/1.root.json to devices as their trusted root\n", r.PublicDir())
			return nil
		}
	},
}

var repoDelegateCmd = &cli.Command{
	Name:    "repo delegate",
	Summary: "delegate a product's releases to k-of-n release keys",
	Usage: `Usage: airlock repo delegate --dir REPO --product PRODUCT --key KEY... --threshold N
         --targets-key KEY [--keyring FILE] [--passphrase-file FILE]

Delegates the target paths PRODUCT/*/* to a new product role (named after the
product with "/" replaced by ".", e.g. acme.router-x1) whose releases need N
signatures of the given keys. The change is a new targets version signed with
the targets key; it is staged and takes effect at the next 'repo publish'.

Flags:
  --dir REPO               repository directory
  --product PRODUCT        product ID, e.g. acme/router-x1
  --key KEY                release approver key (public .pub or private file); repeatable
  --threshold N            signatures each release needs (default 1)
  --targets-key KEY        private targets key
  --keyring FILE           key environment registry: the product keys are registered for the
                           repository's environment; keys of another environment are refused
  --passphrase-file FILE   passphrase of an encrypted private key

Example:
  airlock repo delegate --dir /srv/fw-repo --product acme/router-x1 \
    --key alice.pem.pub --key bob.pem.pub --key carol.pem.pub --threshold 2 \
    --targets-key ~/keys/targets.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		var keyPaths cli.StringList
		fs.Var(&keyPaths, "key", "")
		threshold := fs.Int("threshold", 1, "")
		targetsKey := fs.String("targets-key", "", "")
		keyring := fs.String("keyring", "", "")
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product, "--targets-key", *targetsKey); err != nil {
				return err
			}
			if len(keyPaths) == 0 {
				return cli.Usagef("--key is required")
			}
			kr, err := keyringFor(e, *keyring)
			if err != nil {
				return err
			}
			r, err := repo.OpenWith(*dir, repoOptions(e, kr))
			if err != nil {
				return err
			}
			var pubs []crypto.PublicKey
			for _, p := range keyPaths {
				pub, err := loadPublic(p, *passFile)
				if err != nil {
					return err
				}
				pubs = append(pubs, pub)
			}
			ts, err := signerIn(*dir, *targetsKey, *passFile)
			if err != nil {
				return err
			}
			if err := r.Delegate(*product, pubs, *threshold, ts); err != nil {
				return err
			}
			e.Printf("airlock: delegated %s to %d-of-%d keys (staged; run 'airlock repo publish')\n", *product, *threshold, len(pubs))
			return nil
		}
	},
}

// onlineSigners resolves the snapshot/timestamp keys: flags, else config.
func onlineSigner(dir, flagVal, configured, what, passFile string) (crypto.Signer, error) {
	p := flagVal
	if p == "" {
		p = configured
	}
	if p == "" {
		return nil, cli.Usagef("--%s-key is required (no online %s key is configured)", what, what)
	}
	return signerIn(dir, p, passFile)
}

var repoPublishCmd = &cli.Command{
	Name:    "repo publish",
	Summary: "publish staged metadata and payloads with a new snapshot and timestamp",
	Usage: `Usage: airlock repo publish --dir REPO [--snapshot-key KEY] [--timestamp-key KEY]
         [--log-key KEY] [--passphrase-file FILE]

Makes everything staged public in one consistent snapshot: a staged root
rotation, a staged targets version (delegations), product roles with new
releases and their payloads, then a new snapshot and timestamp. Nothing is
written unless every staged role has its threshold of signatures; otherwise
the error says what is missing, e.g.
  release acme/router-x1 1.1.0 needs 2 signatures, has 1 (1 missing)
With nothing staged, publish refreshes snapshot and timestamp.

When the root carries a transparency policy ('repo log init'), every release
that becomes installable is first appended to the log in REPO/public/log,
and publish waits until a checkpoint covering it is signed with the log key
and cosigned by the policy's witnesses (each "release ... logged at index N"
line on stderr); only then is the new timestamp written. A release is never
logged twice.

Flags:
  --dir REPO               repository directory
  --snapshot-key KEY       snapshot key (default: the configured online key)
  --timestamp-key KEY      timestamp key (default: the configured online key)
  --log-key KEY            transparency log key (default: the configured log key)
  --passphrase-file FILE   passphrase of encrypted private keys

Example:
  airlock repo publish --dir /srv/fw-repo
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		snapKey := fs.String("snapshot-key", "", "")
		tsKey := fs.String("timestamp-key", "", "")
		logKey := fs.String("log-key", "", "")
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			r, err := openRepo(e, args, *dir)
			if err != nil {
				return err
			}
			ls, err := logSigner(*dir, *logKey, r.Config().LogKey, *passFile)
			if err != nil {
				return err
			}
			if ls != nil {
				quietTessera()
				opts := repoOptions(e, nil)
				opts.LogSigner = ls
				if r, err = repo.OpenWith(*dir, opts); err != nil {
					return err
				}
			}
			ss, err := onlineSigner(*dir, *snapKey, r.Config().OnlineSnapshotKey, "snapshot", *passFile)
			if err != nil {
				return err
			}
			ts, err := onlineSigner(*dir, *tsKey, r.Config().OnlineTimestampKey, "timestamp", *passFile)
			if err != nil {
				return err
			}
			res, err := r.Publish(ss, ts)
			if err != nil {
				return err
			}
			for _, p := range res.Released {
				fmt.Fprintln(e.Stdout, p)
			}
			if res.Log != nil {
				for _, p := range slices.Sorted(maps.Keys(res.Log.Appended)) {
					e.Printf("airlock: release %s logged at index %d\n", p, res.Log.Appended[p])
				}
			}
			e.Printf("airlock: published root v%d, targets v%d, snapshot v%d, timestamp v%d\n",
				res.RootVersion, res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion)
			for _, w := range res.Warnings {
				e.Printf("airlock: warning: %s\n", w)
			}
			return nil
		}
	},
}

var repoTimestampCmd = &cli.Command{
	Name:    "repo timestamp",
	Summary: "sign a fresh timestamp (run more often than the timestamp expiry)",
	Usage: `Usage: airlock repo timestamp --dir REPO [--key KEY] [--passphrase-file FILE]

Signs a new timestamp for the current snapshot with a fresh expiry (default
1 day). Devices refuse an expired timestamp, so run this from cron or a timer
on the machine holding the online timestamp key, e.g. every 6 hours.

Flags:
  --dir REPO               repository directory
  --key KEY                timestamp key (default: the configured online key)
  --passphrase-file FILE   passphrase of an encrypted private key

Example:
  airlock repo timestamp --dir /srv/fw-repo
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		key := fs.String("key", "", "")
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			r, err := openRepo(e, args, *dir)
			if err != nil {
				return err
			}
			s, err := onlineSigner(*dir, *key, r.Config().OnlineTimestampKey, "timestamp", *passFile)
			if err != nil {
				return err
			}
			v, err := r.Timestamp(s)
			if err != nil {
				return err
			}
			e.Printf("airlock: timestamp version %d\n", v)
			return nil
		}
	},
}

var repoRenewCmd = &cli.Command{
	Name:    "repo renew",
	Summary: "re-sign targets or a product's role with a new expiry (keeps bundles and devices working)",
	Usage: `Usage: airlock repo renew --dir REPO --role ROLE --key KEY... [--expires D]
         [--passphrase-file FILE] [--json]

Stages the next version of a role with a new expiry and no other change:
ROLE is targets (signed by the targets key) or a product ID such as
acme/router-x1 (signed by its release keys; when its threshold needs more
keys, the other holders sign it with 'airlock release sign'). 'airlock repo
publish' makes it effective.

Devices refuse expired metadata. Online, the snapshot and timestamp are
renewed by every publish and 'repo timestamp'; targets and product roles
(180 days by default) only by a change to them, or by this command. An
offline bundle installs until its root, targets or product role expires
('airlock bundle create' prints when): renew them before then, publish,
and re-create the bundles ('bundle create --force'). Root is renewed with
'airlock repo rotate --role root' without a key change. 'airlock repo
status' shows every role's expiry.

Flags:
  --dir REPO               repository directory
  --role ROLE              targets, or a product ID
  --key KEY                signing key of the role; repeatable
  --expires D              new lifetime from now (Nd or Go duration; default: the
                           repository's for the role, 'repo init --targets-expires'
                           and '--product-expires')
  --passphrase-file FILE   passphrase of encrypted private keys
  --json                   print the result as JSON

Example:
  airlock repo renew --dir /srv/fw-repo --role acme/router-x1 --key ~/keys/product.pem
  airlock repo publish --dir /srv/fw-repo
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		role := fs.String("role", "", "")
		var keyPaths cli.StringList
		fs.Var(&keyPaths, "key", "")
		var life repo.Duration
		durationFlag(fs, "expires", &life)
		passFile := fs.String("passphrase-file", "", "")
		asJSON := fs.Bool("json", false, "")
		return func(e *cli.Env, args []string) error {
			r, err := openRepo(e, args, *dir)
			if err != nil {
				return err
			}
			if err := cli.NeedFlags("--role", *role); err != nil {
				return err
			}
			if len(keyPaths) == 0 {
				return cli.Usagef("--key is required")
			}
			if err := checkKeys(*dir, keyPaths...); err != nil {
				return err
			}
			signers, err := loadSigners(keyPaths, *passFile)
			if err != nil {
				return err
			}
			res, err := r.Renew(*role, time.Duration(life), signers)
			if err != nil {
				return err
			}
			if *asJSON {
				return cli.WriteJSON(e.Stdout, res)
			}
			e.Printf("airlock: staged %s version %d, expires %s (%d of %d signatures)\n",
				res.Role, res.Version, res.Expires.Format(time.RFC3339), res.Signatures, res.Threshold)
			if n := res.Threshold - res.Signatures; n > 0 && res.Role == "targets" {
				e.Printf("airlock: %d more signature(s) needed: airlock release sign --pending %s --key KEY, then airlock repo import\n", n, res.Staged)
			} else if n > 0 {
				e.Printf("airlock: %d more signature(s) needed: airlock release sign --dir %s --product %s --key KEY\n", n, *dir, res.Role)
			}
			e.Printf("airlock: run airlock repo publish to make it effective\n")
			return nil
		}
	},
}

// keyIDArg accepts a key ID or a key file and returns the key ID.
func keyIDArg(v, passFile string) (string, error) {
	if _, err := os.Stat(v); err == nil || keys.IsURI(v) {
		pub, err := loadPublic(v, passFile)
		if err != nil {
			return "", err
		}
		return keys.KeyID(pub)
	}
	if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
		return "", cli.Usagef("%q is neither a key file, a pkcs11: URI nor a 64-hex-digit key ID", v)
	}
	return v, nil
}

var repoRotateCmd = &cli.Command{
	Name:    "repo rotate",
	Summary: "change a role's keys or threshold (root, targets, snapshot, timestamp or a product)",
	Usage: `Usage: airlock repo rotate --dir REPO --role ROLE [--add KEY]... [--remove KEYID|KEY]...
         [--threshold N] --old-key KEY... [--new-key KEY]... [--passphrase-file FILE]

Rotates the keys of a role. The change is staged; 'repo publish' makes it
effective (and refuses while signatures are missing).

ROLE root, targets, snapshot, timestamp: the keys live in root, so this
stages the next root version. --old-key: root keys of the current root (a
threshold of them must sign). For --role root, --new-key gives keys of the
new root (a threshold of the new root keys must also sign). For --role
targets, --new-key gives the new targets key, which re-signs the targets
metadata. For snapshot and timestamp, publish with the new key afterwards.
Holders on other machines sign the carried REPO/staging/root.json with
'airlock release sign --pending FILE --key KEY' and it is merged back with
'airlock repo import'.

ROLE a product (acme/router-x1): the keys live in targets. --old-key is the
targets key; --new-key gives product keys that re-sign the product's
metadata with the new key set.

Flags:
  --dir REPO               repository directory
  --role ROLE              root, targets, snapshot, timestamp or a product ID
  --add KEY                add a key (public or private file); repeatable
  --remove KEYID|KEY       remove a key by TUF key ID or key file; repeatable
  --threshold N            new threshold (default: unchanged)
  --old-key KEY            signing key of the delegator (see above); repeatable
  --new-key KEY            signing key of the new key set (see above); repeatable
  --passphrase-file FILE   passphrase of encrypted private keys

Transparency policy (a root rotation; see 'airlock repo log init'): given
with --role root, these flags change the policy of the new root. Witnesses
given replace the current ones; --witness-threshold alone changes k.
` + logFlagsUsage + `  --no-witnesses               require no witness cosignatures any more

Examples:
  # replace a lost root key; two old root keys and the new one sign
  airlock repo rotate --dir /srv/fw-repo --role root \
    --remove 1f0c...e9 --add root-4.pem.pub \
    --old-key root-1.pem --old-key root-2.pem --new-key root-4.pem
  # replace the online timestamp key
  airlock repo rotate --dir /srv/fw-repo --role timestamp \
    --remove /etc/airlock/timestamp.pem --add ts-2.pem.pub \
    --old-key root-1.pem --old-key root-2.pem
  airlock repo publish --dir /srv/fw-repo --timestamp-key ts-2.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		role := fs.String("role", "", "")
		var add, remove, oldKeys, newKeys cli.StringList
		fs.Var(&add, "add", "")
		fs.Var(&remove, "remove", "")
		fs.Var(&oldKeys, "old-key", "")
		fs.Var(&newKeys, "new-key", "")
		threshold := fs.Int("threshold", 0, "")
		logOpts := logFlags(fs, true)
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--role", *role); err != nil {
				return err
			}
			if len(oldKeys) == 0 {
				return cli.Usagef("--old-key is required")
			}
			lo, err := logOpts(*passFile)
			if err != nil {
				return err
			}
			if lo != nil && *role != "root" {
				return cli.Usagef("the transparency flags need --role root")
			}
			if len(add) == 0 && len(remove) == 0 && *threshold == 0 && len(newKeys) == 0 && lo == nil {
				return cli.Usagef("nothing to change: give --add, --remove, --threshold, --new-key or a transparency flag")
			}
			r, err := repo.OpenWith(*dir, repoOptions(e, nil))
			if err != nil {
				return err
			}
			opts := repo.RotateOptions{Role: *role, Threshold: *threshold, Log: lo}
			for _, p := range add {
				pub, err := loadPublic(p, *passFile)
				if err != nil {
					return err
				}
				opts.Add = append(opts.Add, pub)
			}
			for _, v := range remove {
				id, err := keyIDArg(v, *passFile)
				if err != nil {
					return err
				}
				opts.Remove = append(opts.Remove, id)
			}
			if opts.OldSigners, err = signersIn(*dir, oldKeys, *passFile); err != nil {
				return err
			}
			if opts.NewSigners, err = signersIn(*dir, newKeys, *passFile); err != nil {
				return err
			}
			return rotate(e, r, opts, "run 'airlock repo publish'")
		}
	},
}

// rotate stages a rotation and prints what it staged and what is missing;
// next says what to do once nothing is.
func rotate(e *cli.Env, r *repo.Repo, opts repo.RotateOptions, next string) error {
	res, err := r.Rotate(opts)
	if err != nil {
		return err
	}
	for _, s := range res.Staged {
		fmt.Fprintln(e.Stdout, s)
	}
	if res.Missing != "" {
		e.Printf("airlock: staged; still missing: %s\n", res.Missing)
	} else {
		e.Printf("airlock: staged; %s\n", next)
	}
	return nil
}

var repoRevokeCmd = &cli.Command{
	Name:    "repo revoke",
	Summary: "remove a (compromised) key from a product's delegation",
	Usage: `Usage: airlock repo revoke --dir REPO --product PRODUCT (--key-id ID | --key KEY)
         --targets-key KEY [--passphrase-file FILE]

Removes a key from the product role in a new targets version (staged, signed
with the targets key). After 'repo publish', signatures by the revoked key no
longer count: releases that then lack their threshold stop verifying on
devices until the remaining keys re-sign them with
'airlock release sign --dir REPO --product PRODUCT --version V --key KEY'.
The product must keep at least its threshold of keys: add a replacement
first with 'airlock repo rotate' if needed.

Flags:
  --dir REPO               repository directory
  --product PRODUCT        product ID
  --key-id ID              TUF key ID of the key to revoke
  --key KEY                or the key file (public or private)
  --targets-key KEY        private targets key
  --passphrase-file FILE   passphrase of encrypted private keys

Example:
  airlock repo revoke --dir /srv/fw-repo --product acme/router-x1 \
    --key bob.pem.pub --targets-key ~/keys/targets.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		keyIDFlag := fs.String("key-id", "", "")
		key := fs.String("key", "", "")
		targetsKey := fs.String("targets-key", "", "")
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product, "--targets-key", *targetsKey); err != nil {
				return err
			}
			if (*keyIDFlag == "") == (*key == "") {
				return cli.Usagef("give exactly one of --key-id and --key")
			}
			id := *keyIDFlag
			if *key != "" {
				pub, err := loadPublic(*key, *passFile)
				if err != nil {
					return err
				}
				if id, err = keys.KeyID(pub); err != nil {
					return err
				}
			} else if _, err := keyIDArg(id, ""); err != nil {
				return err
			}
			r, err := repo.OpenWith(*dir, repoOptions(e, nil))
			if err != nil {
				return err
			}
			ts, err := signerIn(*dir, *targetsKey, *passFile)
			if err != nil {
				return err
			}
			if err := r.Revoke(*product, id, ts); err != nil {
				return err
			}
			e.Printf("airlock: revoked key %s from %s (staged; run 'airlock repo publish', then re-sign affected releases)\n", id, *product)
			return nil
		}
	},
}

var repoImportCmd = &cli.Command{
	Name:    "repo import",
	Summary: "merge signatures from a pending file signed on another machine",
	Usage: `Usage: airlock repo import --dir REPO --pending FILE

Merges the signatures of a carried pending metadata file (a copy of a file in
REPO/staging/, signed elsewhere with 'airlock release sign --pending') into
the staged metadata with identical signed content. Only signatures that
verify with a key authorized for that role are merged; a file whose content
was changed is refused.

Flags:
  --dir REPO       repository directory
  --pending FILE   the carried, signed file

Example:
  airlock repo import --dir /srv/fw-repo --pending /media/usb/acme.router-x1.json
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		pending := fs.String("pending", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--pending", *pending); err != nil {
				return err
			}
			r, err := repo.OpenWith(*dir, repoOptions(e, nil))
			if err != nil {
				return err
			}
			role, have, need, err := r.ImportPending(*pending)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "%s %d/%d\n", role, have, need)
			return nil
		}
	},
}

var repoStatusCmd = &cli.Command{
	Name:    "repo status",
	Summary: "show roles, versions, expiry, keys, thresholds and pending work",
	Usage: `Usage: airlock repo status --dir REPO [--json]

Prints one line per role: published version, expiry, valid signatures and
threshold, staged version and its signatures, and the role's key IDs.
Exits 1 if published metadata has expired or a published role no longer
reaches its threshold.

Flags:
  --dir REPO   repository directory
  --json       print the status as JSON (repo.Status); the exit code is the same

Example:
  airlock repo status --dir /srv/fw-repo
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		asJSON := fs.Bool("json", false, "")
		return func(e *cli.Env, args []string) error {
			r, err := openRepo(e, args, *dir)
			if err != nil {
				return err
			}
			st, err := r.Status()
			if err != nil {
				return err
			}
			out := e.Stdout
			if *asJSON {
				if err := cli.WriteJSON(e.Stdout, st); err != nil {
					return err
				}
				out = io.Discard // the table only computes the exit code
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tSIGNED\tSTAGED\tKEYS")
			var bad []string
			for _, rs := range st.Roles {
				staged := "-"
				if rs.StagedVersion != 0 {
					staged = fmt.Sprintf("v%d %d/%d", rs.StagedVersion, rs.StagedSignatures, rs.Threshold)
				}
				exp := "-"
				if !rs.Expires.IsZero() {
					exp = rs.Expires.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\tv%d\t%s\t%d/%d\t%s\t%s\n", rs.Name, rs.Version, exp, rs.Signatures, rs.Threshold, staged, strings.Join(rs.KeyIDs, ","))
				if rs.Version != 0 && rs.Signatures < rs.Threshold {
					bad = append(bad, rs.Name+" is below its threshold")
				}
			}
			tw.Flush()
			for _, name := range st.Expired {
				bad = append(bad, name+" has expired")
			}
			if len(bad) > 0 {
				return errors.New(strings.Join(bad, "; "))
			}
			return nil
		}
	},
}

// openRepo checks that a repository command got no positional arguments and
// a --dir, and opens the repository.
func openRepo(e *cli.Env, args []string, dir string) (*repo.Repo, error) {
	if err := cli.NoArgs(args); err != nil {
		return nil, err
	}
	if err := cli.NeedFlags("--dir", dir); err != nil {
		return nil, err
	}
	return repo.OpenWith(dir, repoOptions(e, nil))
}

// repoOptions are the options of a repository operation: the actor the
// audit log records ($AIRLOCK_ACTOR, else the login name) and the key
// environment registry, if the command checks one.
func repoOptions(e *cli.Env, kr *keys.Keyring) repo.Options {
	return repo.Options{Actor: e.Getenv("AIRLOCK_ACTOR"), Keyring: kr}
}
