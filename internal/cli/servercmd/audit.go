package servercmd

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/internal/cli"
)

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "audit verify",
			Summary: "verify the audit log's hash chain, Merkle tree and signed checkpoints",
			Usage: `Usage: airlock audit verify --log DIR [--key PUB] [--checkpoints FILE]... [--json]

Checks every entry of the audit log in DIR: canonical encoding, contiguous
seq numbers, the hash chain, and every signed checkpoint (signature with the
log's Ed25519 public key, the Merkle root recomputed at its size, and
consistency with the previous checkpoint). Prints the entries and checkpoints
checked, the tree size and root. On the first problem it exits 1 and names
it: an entry edited, removed or reordered, a checkpoint signature invalid,
checkpoints inconsistent, or entries removed after a signed checkpoint.

A partial last line (a crash during an append) is reported, not treated as
tampering. Entries after the last checkpoint are protected by the hash chain
only: an attacker with write access could cut them, or cut the log together
with its newest checkpoints. Keep a copy of the checkpoints file off the box
and pass it with --checkpoints to catch that.

Flags:
  --log DIR            audit log directory (holds audit.log and checkpoints)
  --key PUB            checkpoint public key (default DIR/audit-key.pub; pin
                       your own copy: the one in DIR is only as safe as DIR)
  --checkpoints FILE   a copy of the checkpoints file kept elsewhere
                       (repeatable); each checkpoint in it must match the log
  --json               print the verified report as JSON (warnings as fields)

Examples:
  airlock audit verify --log /var/lib/airlock/audit --key ~/audit-key.pub
  airlock audit verify --log ./audit --checkpoints /mnt/backup/checkpoints
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				dir := fs.String("log", "", "")
				keyPath := fs.String("key", "", "")
				var external cli.StringList
				fs.Var(&external, "checkpoints", "")
				asJSON := fs.Bool("json", false, "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *dir == "" {
						return cli.Usagef("--log is required")
					}
					return auditVerify(e, *dir, *keyPath, external, *asJSON)
				}
			},
		},
		&cli.Command{
			Name:    "audit show",
			Summary: "list audit log entries; with --release, who approved, signed, distributed and installed it",
			Usage: `Usage: airlock audit show --log DIR [--since TIME] [--until TIME] [--actor A]
                          [--release PRODUCT@VERSION] [--device D] [--action ACTION] [--json]

Prints the audit entries that match every given filter, oldest first, as a
table (time, seq, actor, action, release, device, details) or, with --json,
as the log's own canonical JSON lines. With --release it also prints a
summary answering who added, signed, approved and published the release, who
distributed it (rollouts), and which devices installed it, rolled back or
failed (not with --json).

show reads the log strictly but does not check the chain or the signatures:
run 'airlock audit verify' when the answer must be trusted.

Flags:
  --log DIR                  audit log directory
  --since TIME               entries at or after TIME: RFC 3339 (2026-03-01T00:00:00Z)
                             or a duration before now (24h, 90m)
  --until TIME               entries before TIME (same forms)
  --actor A                  user, key ID, device ID or "system"
  --release PRODUCT@VERSION  one release, e.g. acme/router-x1@2.0.0
  --device D                 device ID
  --action ACTION            one of: ` + actionList() + `
  --json                     print JSON lines

Examples:
  airlock audit show --log ./audit --release acme/router-x1@2.0.0
  airlock audit show --log ./audit --action auth.login_failed --since 24h --json
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				dir := fs.String("log", "", "")
				since := fs.String("since", "", "")
				until := fs.String("until", "", "")
				actor := fs.String("actor", "", "")
				release := fs.String("release", "", "")
				device := fs.String("device", "", "")
				action := fs.String("action", "", "")
				asJSON := fs.Bool("json", false, "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *dir == "" {
						return cli.Usagef("--log is required")
					}
					now := time.Now()
					f := audit.Filter{Actor: *actor, Release: *release, Device: *device, Action: audit.Action(*action)}
					var err error
					if f.Since, err = parseWhen(*since, now); err != nil {
						return cli.Usagef("--since: %v", err)
					}
					if f.Until, err = parseWhen(*until, now); err != nil {
						return cli.Usagef("--until: %v", err)
					}
					if f.Action != "" && !f.Action.Valid() {
						return cli.Usagef("--action: unknown action %q (one of: %s)", *action, actionList())
					}
					if *release != "" && !strings.Contains(*release, "@") {
						return cli.Usagef("--release must be PRODUCT@VERSION, e.g. acme/router-x1@2.0.0")
					}
					return auditShow(e, *dir, f, *asJSON)
				}
			},
		},
	)
}

func actionList() string {
	var s []string
	for _, a := range audit.Actions {
		s = append(s, string(a))
	}
	return strings.Join(s, ", ")
}

// parseWhen parses an RFC 3339 time or a duration before now; "" is the zero
// time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return now.Add(-d), nil
}

func auditVerify(e *cli.Env, dir, keyPath string, external []string, asJSON bool) error {
	pinned := keyPath != ""
	if !pinned {
		keyPath = filepath.Join(dir, audit.PublicKeyFile)
	}
	pub, err := audit.LoadPublic(keyPath)
	if err != nil {
		return fmt.Errorf("failed to load the checkpoint public key: %w", err)
	}
	var opts audit.VerifyOptions
	for _, p := range external {
		notes, err := audit.ReadCheckpointNotes(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		opts.External = append(opts.External, notes...)
	}
	rep, err := audit.VerifyWithOptions(dir, pub, opts)
	if err != nil {
		if errors.Is(err, audit.ErrTampered) {
			if rep != nil {
				e.Printf("airlock: %d entries verified before the problem\n", rep.Entries)
			}
			return fmt.Errorf("audit log %s does not verify: %w", dir, err)
		}
		return err
	}
	if asJSON {
		type checkpoint struct {
			Size   uint64    `json:"size"`
			Time   time.Time `json:"time"`
			Origin string    `json:"origin"`
		}
		out := struct {
			Entries             int64       `json:"entries"`
			Checkpoints         int         `json:"checkpoints"`
			Root                string      `json:"root"`
			Last                *checkpoint `json:"last_checkpoint,omitempty"`
			Unsigned            int64       `json:"unsigned_entries"`
			PublicKey           string      `json:"public_key"`
			KeyPinned           bool        `json:"key_pinned"`
			TornBytes           int64       `json:"torn_bytes"`
			TornCheckpointBytes int64       `json:"torn_checkpoint_bytes"`
		}{Entries: int64(rep.Entries), Checkpoints: rep.Checkpoints, Root: hex.EncodeToString(rep.Root[:]), Unsigned: int64(rep.Unsigned),
			PublicKey: hex.EncodeToString(pub), KeyPinned: pinned, TornBytes: int64(rep.TornBytes), TornCheckpointBytes: int64(rep.TornCheckpointBytes)}
		if rep.Last != nil {
			out.Last = &checkpoint{Size: rep.Last.Size, Time: rep.Last.Time, Origin: rep.Last.Origin}
		}
		return cli.WriteJSON(e.Stdout, out)
	}
	printVerifyReport(e.Stdout, rep, pub)
	if rep.Checkpoints == 0 && rep.Entries > 0 {
		e.Printf("airlock: warning: no signed checkpoint: the log is protected by its hash chain only\n")
	}
	if rep.TornBytes > 0 {
		e.Printf("airlock: warning: a crash left a partial last entry (%d bytes); it was never acknowledged and is set aside at the next open\n", rep.TornBytes)
	}
	if rep.TornCheckpointBytes > 0 {
		e.Printf("airlock: warning: a crash left a partial last checkpoint (%d bytes); it is set aside at the next open\n", rep.TornCheckpointBytes)
	}
	if !pinned {
		e.Printf("airlock: hint: verified with %s from the log directory; pass --key with a copy kept elsewhere\n", keyPath)
	}
	return nil
}

func printVerifyReport(w io.Writer, rep *audit.VerifyReport, pub ed25519.PublicKey) {
	fmt.Fprintf(w, "entries checked:      %d\n", rep.Entries)
	fmt.Fprintf(w, "checkpoints checked:  %d\n", rep.Checkpoints)
	fmt.Fprintf(w, "tree size:            %d\n", rep.Entries)
	fmt.Fprintf(w, "root hash:            %s\n", hex.EncodeToString(rep.Root[:]))
	if rep.Last != nil {
		fmt.Fprintf(w, "last checkpoint:      size %d, signed %s, origin %s\n", rep.Last.Size, rep.Last.Time.Format(time.RFC3339), rep.Last.Origin)
	}
	fmt.Fprintf(w, "unsigned entries:     %d (after the last checkpoint)\n", rep.Unsigned)
	fmt.Fprintf(w, "public key:           %s\n", hex.EncodeToString(pub))
}

func auditShow(e *cli.Env, dir string, f audit.Filter, asJSON bool) error {
	var matched []audit.Entry
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "TIME\tSEQ\tACTOR\tACTION\tRELEASE\tDEVICE\tDETAILS")
	}
	n := 0
	err := audit.Scan(dir, f, func(en audit.Entry) error {
		if err := e.Ctx.Err(); err != nil {
			return err
		}
		n++
		if asJSON {
			_, err := e.Stdout.Write(append(en.Encode(), '\n'))
			return err
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", en.Time.Format(time.RFC3339), en.Seq, en.Actor, en.Action,
			dash(en.Release), dash(en.Device), details(en.Details))
		if f.Release != "" {
			if len(matched) == audit.MaxQueryResults {
				return fmt.Errorf("%w: narrow the filter", audit.ErrTooManyResults)
			}
			matched = append(matched, en)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if asJSON {
		return nil
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f.Release != "" {
		fmt.Fprintln(e.Stdout)
		printSummary(e.Stdout, audit.Summarize(f.Release, matched))
		e.Printf("airlock: hint: show does not verify the log; run 'airlock audit verify --log %s' to trust this answer\n", dir)
	}
	if n == 0 {
		e.Printf("airlock: no matching entries\n")
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func details(d map[string]string) string {
	if len(d) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", k, d[k])
	}
	return b.String()
}

func printSummary(w io.Writer, s *audit.ReleaseSummary) {
	fmt.Fprintf(w, "Release %s\n", s.Release)
	line := func(label string, evs []audit.Event, withAction bool) {
		if len(evs) == 0 {
			fmt.Fprintf(w, "  %-13s nobody (no entry)\n", label+":")
			return
		}
		for i, ev := range evs {
			l := ""
			if i == 0 {
				l = label + ":"
			}
			who := ev.Actor
			if ev.Device != "" && ev.Device != ev.Actor {
				who += " (device " + ev.Device + ")"
			}
			if withAction {
				who = string(ev.Action) + " by " + who
			}
			extra := ""
			if len(ev.Details) > 0 {
				extra = " " + details(ev.Details)
			}
			fmt.Fprintf(w, "  %-13s %s at %s%s\n", l, who, ev.Time.Format(time.RFC3339), extra)
		}
	}
	line("added", s.Added, false)
	line("signed", s.Signed, false)
	line("approved", s.Approved, true)
	line("published", s.Published, true)
	line("distributed", s.Rollouts, true)
	devices := func(label string, evs []audit.Event) {
		seen := map[string]bool{}
		var ids []string
		for _, ev := range evs {
			id := ev.Device
			if id == "" {
				id = ev.Actor
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			fmt.Fprintf(w, "  %-13s none\n", label+":")
			return
		}
		fmt.Fprintf(w, "  %-13s %d device(s): %s\n", label+":", len(ids), strings.Join(ids, ", "))
	}
	if len(s.Assigned) > 0 {
		devices("assigned", s.Assigned)
	}
	devices("installed", s.Installed)
	devices("rolled back", s.RolledBack)
	devices("failed", s.Failed)
}
