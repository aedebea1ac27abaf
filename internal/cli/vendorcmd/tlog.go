package vendorcmd

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/logmonitor"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/tlog"
	"k8s.io/klog/v2"
)

func init() {
	commands = append(commands, repoLogInitCmd, logMonitorCmd)
}

// quietTessera discards the log lines of tessera (klog): the commands
// report the log's failures in their own errors.
func quietTessera() {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
}

// logFlagsUsage documents the transparency flags of repo init, repo rotate
// and repo log init.
const logFlagsUsage = `  --log-key KEY                Ed25519 key signing the transparency log's checkpoints (file
                               outside REPO or pkcs11: URI; recorded as the key of 'repo publish')
  --log-origin NAME            the log's name (default airlock.log/<16 hex of root version 1>)
  --witness NAME=VKEY@URL      a witness: its cosignature/v1 verifier key and the URL 'repo
                               publish' sends checkpoints to (C2SP tlog-witness); repeatable
  --witness-threshold K        witness cosignatures devices require (default: all witnesses)
`

// logFlags registers the transparency flags; the returned function builds
// the LogOptions they give (nil when none was given).
func logFlags(fs *flag.FlagSet, noWitnesses bool) func(passFile string) (*repo.LogOptions, error) {
	key := fs.String("log-key", "", "")
	origin := fs.String("log-origin", "", "")
	var witnesses cli.StringList
	fs.Var(&witnesses, "witness", "")
	threshold := fs.Int("witness-threshold", 0, "")
	none := new(bool)
	if noWitnesses {
		none = fs.Bool("no-witnesses", false, "")
	}
	return func(passFile string) (*repo.LogOptions, error) {
		if *key == "" && *origin == "" && len(witnesses) == 0 && *threshold == 0 && !*none {
			return nil, nil
		}
		if *none && (len(witnesses) > 0 || *threshold != 0) {
			return nil, cli.Usagef("--no-witnesses conflicts with --witness and --witness-threshold")
		}
		o := &repo.LogOptions{KeyPath: *key, Origin: *origin, Threshold: *threshold, NoWitnesses: *none}
		if *key != "" {
			pub, err := loadPublic(*key, passFile)
			if err != nil {
				return nil, fmt.Errorf("log key: %w", err)
			}
			o.Key = pub
		}
		for _, w := range witnesses {
			wt, err := parseWitnessFlag(w)
			if err != nil {
				return nil, err
			}
			o.Witnesses = append(o.Witnesses, wt)
		}
		return o, nil
	}
}

// parseWitnessFlag parses NAME=VKEY@URL.
func parseWitnessFlag(v string) (tlog.Witness, error) {
	name, rest, ok := strings.Cut(v, "=")
	i := strings.LastIndex(rest, "@")
	if !ok || name == "" || i < 1 {
		return tlog.Witness{}, cli.Usagef("--witness %q: want NAME=VKEY@URL", v)
	}
	return tlog.Witness{Name: name, Key: rest[:i], URL: rest[i+1:]}, nil
}

// logSigner opens the log key for publish: the flag, else the configured
// key; nil when neither is set.
func logSigner(dir, flagVal, configured, passFile string) (crypto.Signer, error) {
	p := flagVal
	if p == "" {
		p = configured
	}
	if p == "" {
		return nil, nil
	}
	s, err := signerIn(dir, p, passFile)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	return s, nil
}

var repoLogInitCmd = &cli.Command{
	Name:    "repo log init",
	Summary: "enable the transparency log on an existing repository (a root rotation)",
	Usage: `Usage: airlock repo log init --dir REPO --log-key KEY [--log-origin NAME]
         [--witness NAME=VKEY@URL]... [--witness-threshold K] --old-key KEY...
         [--passphrase-file FILE]

Stages the next root version with a transparency policy (the signed root
field x-airlock-transparency): the log's note verifier key, the witnesses
and how many of them must cosign each checkpoint. Like any root rotation, a
threshold of the current root keys signs it (--old-key; holders elsewhere
sign the carried REPO/staging/root.json with 'airlock release sign
--pending'). 'airlock repo publish' then publishes the root and appends
every published release to the log in REPO/public/log (C2SP tlog-tiles,
served as /repo/log/ by 'airlock serve'): devices that trust the new root
refuse any release that is not in the witnessed log. Change the witnesses
or the log key later with 'airlock repo rotate --role root' and the same
flags.

Flags:
  --dir REPO                   repository directory
` + logFlagsUsage + `  --old-key KEY                root key of the current root; repeatable
  --passphrase-file FILE       passphrase of encrypted private keys

Example:
  airlock key gen --type ed25519 --out /etc/airlock/log.pem
  airlock repo log init --dir /srv/fw-repo --log-key /etc/airlock/log.pem \
    --witness w1.example=w1.example+0b2f5c1e+AQ...@https://w1.example/ \
    --witness w2.example=w2.example+77ad01c3+AQ...@https://w2.example/ \
    --witness-threshold 2 --old-key root-1.pem --old-key root-2.pem
  airlock repo publish --dir /srv/fw-repo
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		logOpts := logFlags(fs, false)
		var oldKeys cli.StringList
		fs.Var(&oldKeys, "old-key", "")
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir); err != nil {
				return err
			}
			if len(oldKeys) == 0 {
				return cli.Usagef("--old-key is required")
			}
			lo, err := logOpts(*passFile)
			if err != nil {
				return err
			}
			if lo == nil || lo.Key == nil {
				return cli.Usagef("--log-key is required")
			}
			r, err := repo.OpenWith(*dir, repoOptions(e, nil))
			if err != nil {
				return err
			}
			if err := checkKeys(*dir, lo.KeyPath); err != nil {
				return err
			}
			root, err := r.PublishedRoot()
			if err != nil {
				return err
			}
			if _, had, err := repo.RootPolicy(root); err != nil {
				return err
			} else if had {
				return fmt.Errorf("%w: the log is already enabled (root version %d); change it with 'airlock repo rotate --role root'", repo.ErrInvalidOptions, root.Signed.Version)
			}
			opts := repo.RotateOptions{Role: "root", Log: lo}
			if opts.OldSigners, err = signersIn(*dir, oldKeys, *passFile); err != nil {
				return err
			}
			return rotate(e, r, opts, "run 'airlock repo publish' to publish the root and log the releases")
		}
	},
}

// Limits of the files log monitor reads.
const (
	maxMonitorCAFile = 1 << 20
	// MonitorTimeout bounds one monitor run.
	monitorTimeout = 10 * time.Minute
)

var logMonitorCmd = &cli.Command{
	Name:    "log monitor",
	Summary: "follow a repository's transparency log and flag releases it cannot explain",
	Usage: `Usage: airlock log monitor --repo URL --state DIR [--root FILE] [--expect FILE]
         [--checkpoint FILE]... [--ca FILE]

Reads the repository's transparency log from where the last run stopped
and lists every new release (index, product@version, target, the key IDs
that signed it, its provenance digest) on stdout. It verifies the checkpoint
(log key and k-of-n witness cosignatures, from the trusted root's policy),
that the log only grew since the checkpoint stored in DIR, and that the
entries it read are exactly those the checkpoint commits to.

It exits 1, and keeps its stored state so the next run flags them again,
on anything it cannot explain:
  unknown signer   a signer that no targets version delegated the role to
  not expected     a release absent from the --expect list
  split view       two checkpoints of one size with different roots (the
                   stored one, or one given with --checkpoint, e.g. from a
                   witness's state), or a log rewritten since the last run
  rollback         the repository serves an older checkpoint than one seen

Flags:
  --repo URL          repository base URL (metadata/ and log/ under it), e.g.
                      https://updates.example.com/repo/ for 'airlock serve'
  --state DIR         state directory: trusted root and last verified checkpoint
  --root FILE         pinned trusted root metadata to start from (default: the
                      root stored in DIR, else the repository's 1.root.json)
  --expect FILE       the releases the vendor published, one PRODUCT@VERSION a line
  --checkpoint FILE   a checkpoint seen elsewhere to compare; repeatable
  --ca FILE           PEM CA to trust for the repository (default: system roots)

Example (from cron, alerting on a non-zero exit):
  airlock log monitor --repo https://updates.example.com/repo/ \
    --state /var/lib/airlock-monitor --root pinned-root.json \
    --expect releases.txt
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		repoURL := fs.String("repo", "", "")
		stateDir := fs.String("state", "", "")
		rootFile := fs.String("root", "", "")
		expect := fs.String("expect", "", "")
		var checkpoints cli.StringList
		fs.Var(&checkpoints, "checkpoint", "")
		ca := fs.String("ca", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--repo", *repoURL, "--state", *stateDir); err != nil {
				return err
			}
			cfg := logmonitor.Config{RepoURL: *repoURL, StateDir: *stateDir}
			if *rootFile != "" {
				b, err := durable.ReadFile(durable.OS, *rootFile, logmonitor.MaxRootSize)
				if err != nil {
					return fmt.Errorf("root: %w", err)
				}
				cfg.Root = b
			}
			if *expect != "" {
				b, err := durable.ReadFile(durable.OS, *expect, logmonitor.MaxExpectedSize)
				if err != nil {
					return err
				}
				if cfg.Expected, err = logmonitor.ParseExpected(b); err != nil {
					return err
				}
			}
			for _, f := range checkpoints {
				b, err := durable.ReadFile(durable.OS, f, tlog.MaxCheckpointSize)
				if err != nil {
					return err
				}
				cfg.Checkpoints = append(cfg.Checkpoints, b)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			if *ca != "" {
				pem, err := durable.ReadFile(durable.OS, *ca, maxMonitorCAFile)
				if err != nil {
					return err
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("%s holds no PEM certificate", *ca)
				}
				tr.TLSClientConfig.RootCAs = pool
			}
			cfg.Client = &http.Client{Transport: tr, Timeout: time.Minute}
			quietTessera()
			ctx, cancel := context.WithTimeout(context.Background(), monitorTimeout)
			defer cancel()
			rep, err := logmonitor.Run(ctx, cfg)
			if err != nil {
				return err
			}
			e.Printf("airlock: log %s: checkpoint size %d (was %d), cosigned by %s\n", rep.Origin, rep.Size, rep.PrevSize, witnessList(rep.Witnesses))
			for _, r := range rep.Releases {
				prov := r.Entry.ProvenanceSHA256
				if prov == "" {
					prov = "-"
				}
				fmt.Fprintf(e.Stdout, "%d\t%s@%s\t%s\tsigners=%s\tprovenance=%s\n", r.Index, r.Entry.Product, r.Entry.Version,
					r.Entry.Target, strings.Join(r.Entry.Signers, ","), prov)
			}
			for _, p := range rep.Problems {
				e.Printf("airlock: %s\n", p)
			}
			if len(rep.Problems) > 0 {
				return errMonitor(len(rep.Problems))
			}
			return nil
		}
	},
}

func witnessList(names []string) string {
	if len(names) == 0 {
		return "no witness"
	}
	return strings.Join(names, ", ")
}

// errMonitor is the error of a run that found problems.
func errMonitor(n int) error {
	return fmt.Errorf("%w: %d entries or checkpoints the monitor cannot explain", errUnexplained, n)
}

var errUnexplained = errors.New("log monitor")
