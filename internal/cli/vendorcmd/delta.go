package vendorcmd

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/airlockfw/airlock/delta/deltaenc"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

func init() {
	commands = append(commands, deltaCreateCmd, deltaStatsCmd)
}

var deltaCreateCmd = &cli.Command{
	Name:    "delta create",
	Summary: "sign a delta from an older release into an existing release",
	Usage: `Usage: airlock delta create --dir REPO --product PRODUCT --from BASE --to VERSION
         --key KEY... [--keyring FILE] [--passphrase-file FILE]

Makes the delta that rebuilds release VERSION from release BASE (both of
PRODUCT, schema 2, published or pending) and signs it into VERSION's
release metadata: devices running BASE may then install VERSION from a
delta bundle ('airlock bundle create --delta-from BASE'), which carries
only what changed. 'airlock release add --delta-from BASE' does the same
when a release is added.

A delta is two streams (docs/delta-format.md), made from the payloads in
the repository, never from image files: the tree stream rebuilds VERSION's
dm-verity hash tree from BASE's, the data stream its image from BASE's.
Before it is signed, the delta is applied to BASE and must give back
VERSION exactly. It is kept in REPO/deltas/PRODUCT/VERSION/from-BASE.delta
(never served: online devices fetch the blocks they miss from the payload
with HTTP Range requests).

Adding a delta changes the product's metadata like any other change: it is
staged and signed by KEY, other approvers sign it with 'airlock release
sign' until the product's threshold is reached (earlier pending approvals
are cleared), and 'airlock repo publish' makes it effective. The release
itself (its payload, its installed image) does not change.

Refused: a release or base that does not exist or is schema 1, a delta the
release already signs, more than 8 deltas per release, and a BASE newer
than VERSION unless VERSION was signed with --allow-downgrade.

Flags:
  --dir REPO               repository directory
  --product PRODUCT        product ID
  --from BASE              the release devices run
  --to VERSION             the release they install
  --key KEY                product signing key; repeatable
  --keyring FILE           key environment registry (default $AIRLOCK_KEYRING or
                           ~/.config/airlock/keyring.json)
  --passphrase-file FILE   passphrase of encrypted private keys

Example:
  airlock delta create --dir /srv/fw-repo --product acme/router-x1 --from 1.0.0 --to 1.1.0 --key alice.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		from := fs.String("from", "", "")
		to := fs.String("to", "", "")
		var keyPaths cli.StringList
		fs.Var(&keyPaths, "key", "")
		keyring := fs.String("keyring", "", "")
		passFile := fs.String("passphrase-file", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product, "--from", *from, "--to", *to); err != nil {
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
			signers, err := signersIn(*dir, keyPaths, *passFile)
			if err != nil {
				return err
			}
			d, rel, err := r.AddDelta(*product, *to, *from, signers...)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.Stdout, d.Path)
			printDelta(e, d, rel.Length)
			e.Printf("airlock: staged %s %s with the delta from %s, signatures %d/%d\n", rel.Product, rel.Version, d.From, rel.Signatures, rel.Threshold)
			if rel.Signatures < rel.Threshold {
				e.Printf("airlock: hint: %d more approvals: 'airlock release sign --dir %s --product %s --version %s --key KEY'\n",
					rel.Threshold-rel.Signatures, *dir, rel.Product, rel.Version)
			}
			return nil
		}
	},
}

// printDelta says what a delta weighs next to the whole payload.
func printDelta(e *cli.Env, d *repo.DeltaInfo, payload int64) {
	e.Printf("airlock: delta %s -> %s: %d bytes (tree %d, data %d), %s of the %d-byte payload; %d of %d blocks reused\n",
		d.From, d.Version, d.Length, d.Delta.Tree.Length, d.Delta.Data.Length, percent(d.Length, payload), payload,
		d.Data.CopiedBlocks+d.Data.ZeroBlocks, d.Data.NewBlocks)
}

func percent(a, b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

var deltaStatsCmd = &cli.Command{
	Name:    "delta stats",
	Summary: "report what a delta between two images or releases would reuse and weigh",
	Usage: `Usage: airlock delta stats --from OLD.img --to NEW.img [--json]
       airlock delta stats --dir REPO --product PRODUCT --from BASE --to VERSION [--json]

Runs the delta encoder (docs/delta-format.md) and reports what it made,
without writing or signing anything: how many 4 KiB blocks of the new image
are copied from the old one, are zeros, or are sent (literal), in how many
compressed windows, how many bytes of the old image served as compression
dictionaries, and the delta's bytes next to the new image's size.

The first form compares two image files. The second compares two releases
of a repository as 'airlock delta create' would (both streams, the hash
tree's and the image's, made from the payloads in the repository) and
compares the delta with the release's whole payload.

The encoder holds both images in memory (docs/delta-format.md, "Memory").

Flags:
  --from OLD.img     the old image (with --dir: the base release's version)
  --to NEW.img       the new image (with --dir: the new release's version)
  --dir REPO         compare two releases of this repository
  --product PRODUCT  their product (with --dir)
  --json             print JSON instead of text

Examples:
  airlock delta stats --from build/1.0.0.img --to build/1.1.0.img
  airlock delta stats --dir /srv/fw-repo --product acme/router-x1 --from 1.0.0 --to 1.1.0 --json
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		from := fs.String("from", "", "")
		to := fs.String("to", "", "")
		asJSON := fs.Bool("json", false, "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--from", *from, "--to", *to); err != nil {
				return err
			}
			var st *repo.DeltaStats
			var err error
			if *dir != "" {
				if err := cli.NeedFlags("--product", *product); err != nil {
					return err
				}
				r, err := repo.OpenWith(*dir, repoOptions(e, nil))
				if err != nil {
					return err
				}
				if st, err = r.DeltaStatsOf(*product, *from, *to); err != nil {
					return err
				}
			} else {
				if *product != "" {
					return cli.Usagef("--product needs --dir")
				}
				if st, err = repo.DeltaStatsFiles(*from, *to); err != nil {
					return err
				}
			}
			if *asJSON {
				return cli.WriteJSON(e.Stdout, statsJSONOf(st))
			}
			printStats(e.Stdout, st)
			return nil
		}
	},
}

// streamJSON is one stream's deltaenc.Stats as JSON.
type streamJSON struct {
	OldLength     int64   `json:"old_length"`
	NewLength     int64   `json:"new_length"`
	NewBlocks     int64   `json:"new_blocks"`
	CopiedBlocks  int64   `json:"copied_blocks"`
	ZeroBlocks    int64   `json:"zero_blocks"`
	LiteralBlocks int64   `json:"literal_blocks"`
	Ops           int64   `json:"operations"`
	Windows       int64   `json:"windows"`
	StoredWindows int64   `json:"stored_windows"`
	DictBytes     int64   `json:"dictionary_bytes"`
	WindowBytes   int64   `json:"window_bytes"`
	HeaderBytes   int64   `json:"header_bytes"`
	Bytes         int64   `json:"delta_bytes"`
	HeaderSHA256  string  `json:"header_sha256"`
	Seconds       float64 `json:"seconds"`
}

type statsJSON struct {
	Tree          *streamJSON `json:"tree,omitempty"`
	Data          *streamJSON `json:"data"`
	DeltaBytes    int64       `json:"delta_bytes"`              // both streams
	PayloadLength int64       `json:"payload_length,omitempty"` // the new release's whole payload (--dir)
}

func streamJSONOf(s *deltaenc.Stats) *streamJSON {
	if s == nil {
		return nil
	}
	return &streamJSON{OldLength: s.OldLength, NewLength: s.NewLength, NewBlocks: s.NewBlocks, CopiedBlocks: s.CopiedBlocks,
		ZeroBlocks: s.ZeroBlocks, LiteralBlocks: s.LiteralBlocks, Ops: s.Ops, Windows: s.Windows, StoredWindows: s.StoredWindows,
		DictBytes: s.DictBytes, WindowBytes: s.WindowBytes, HeaderBytes: s.HeaderBytes, Bytes: s.Bytes,
		HeaderSHA256: fmt.Sprintf("%x", s.HeaderSHA256), Seconds: s.Duration.Seconds()}
}

func statsJSONOf(st *repo.DeltaStats) statsJSON {
	j := statsJSON{Tree: streamJSONOf(st.Tree), Data: streamJSONOf(st.Data), DeltaBytes: st.Data.Bytes, PayloadLength: st.PayloadLength}
	if st.Tree != nil {
		j.DeltaBytes += st.Tree.Bytes
	}
	return j
}

func printStats(w io.Writer, st *repo.DeltaStats) {
	total := st.Data.Bytes
	if st.Tree != nil {
		fmt.Fprintf(w, "tree stream:\n%sdata stream:\n%s", indent(st.Tree.String()), indent(st.Data.String()))
		total += st.Tree.Bytes
	} else {
		fmt.Fprint(w, st.Data.String())
	}
	d := st.Data
	fmt.Fprintf(w, "blocks reused   %d of %d (%d copied, %d zero), %d sent\n", d.CopiedBlocks+d.ZeroBlocks, d.NewBlocks, d.CopiedBlocks, d.ZeroBlocks, d.LiteralBlocks)
	fmt.Fprintf(w, "delta           %d bytes, %s of the %d-byte new image\n", total, percent(total, d.NewLength), d.NewLength)
	if st.PayloadLength > 0 {
		fmt.Fprintf(w, "whole payload   %d bytes: the delta is %s of it\n", st.PayloadLength, percent(total, st.PayloadLength))
	}
}

// indent indents the lines of a stream's statistics under its heading.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}
