package vendorcmd

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

func init() {
	commands = append(commands, releaseAddCmd, releaseSignCmd, releaseListCmd)
}

var releaseAddCmd = &cli.Command{
	Name:    "release add",
	Summary: "add a firmware release to a product (staged until its threshold signs)",
	Usage: `Usage: airlock release add --dir REPO --product PRODUCT --image FILE --version SEMVER
         --security-version N --model MODEL... [--hw-rev RANGE] [--channel C]
         [--depends COMPONENT>=VERSION]... [--compress zstd] [--frame-size SIZE]
         [--schema 1|2] [--notes TEXT] [--allow-downgrade] [--copy]
         [--delta-from VERSION]... [--provenance FILE]
         --key KEY... [--keyring FILE] [--passphrase-file FILE]

Streams the image once into REPO/staging (compressing it with zstd when
asked, hashing the raw image and the file devices download), records the
firmware rules in the TUF target's custom field and signs the product role's
pending metadata with the given product keys. The target path is
PRODUCT/VERSION/FILE (FILE.zst when compressed).

The release uses metadata schema 2 unless --schema 1: the payload starts
with the image's dm-verity hash tree (4 KiB blocks, SHA-256, the product's
salt), whose root hash is signed, and a compressed payload is cut into
independent zstd frames of --frame-size installed bytes (default 1 MiB)
listed with their digests, so that devices verify every block before they
write it (docs/release-metadata.md, "Block index"). Devices older than
schema 2 skip schema 2 releases: publish --schema 1 releases for them.

The repository keeps its own copy of the image (a copy-on-write reflink where
the filesystem supports it, e.g. XFS or Btrfs; a copy otherwise), hashed as
it is written: rebuilding the image file afterwards never changes a release,
and the file itself is left as it was. An image that changes while it is
added is refused.

With --delta-from VERSION (repeatable, at most 8), the release also signs
a delta from each older release VERSION of the product (schema 2,
published or pending): devices running VERSION may install this release
from a delta bundle ('airlock bundle create --delta-from VERSION'), which
carries only what changed. The delta is made from the payloads in the
repository (not from the image file), applied back to check that it
rebuilds this release exactly, and kept in
REPO/deltas/PRODUCT/VERSION/from-BASE.delta. 'airlock delta create' adds
one to an existing release; 'airlock delta stats' shows what one would
weigh.

The release is published by 'airlock repo publish' once the product's
threshold of keys has signed: other approvers sign with 'airlock release
sign', on this machine or on a copy of REPO/staging/<role>.json.

With --provenance FILE, the build's provenance is checked and kept with
the release: a DSSE envelope (payload type application/vnd.in-toto+json) of
an in-toto Statement v1 with a SLSA provenance v1 predicate, one of whose
subjects has the SHA-256 of the image (the raw image as given, before any
compression). It must pass the product's provenance policy ('airlock repo
provenance-policy': builder, source repository and commit, build type, k of
n builder signing keys); a product with a policy needs --provenance. The
envelope is stored beside the release (served as
targets/PRODUCT/VERSION/<sha256>.provenance.json once published) and its
SHA-256 and length are signed into the release metadata
(custom.airlock.provenance). 'airlock repo publish' checks it again, and in
a prod repository refuses a release without acceptable provenance
(docs/transparency.md, "Provenance").

Refused: a product without delegation, a key that is not one of the
product's keys, a version that already exists, and a version not greater
than the newest release unless --allow-downgrade (which is signed into the
release metadata, so devices may then install it over a newer version; the
security version still never goes down on a device).

Flags:
  --dir REPO                  repository directory
  --product PRODUCT           product ID, e.g. acme/router-x1
  --image FILE                the raw firmware image
  --version SEMVER            release version, e.g. 1.1.0
  --security-version N        anti-rollback epoch (raise it for security fixes)
  --model MODEL               device model the release fits; repeatable
  --hw-rev RANGE              hardware revisions, e.g. ">=2 <5" (default any)
  --channel C                 release channel (default stable)
  --depends COMPONENT>=VER    required component version; repeatable
  --compress zstd             compress the payload
  --frame-size SIZE           installed bytes per zstd frame (e.g. 1MiB), a multiple of 4 KiB from
                              64 KiB to 4 MiB (default 1 MiB; schema 2, --compress zstd)
  --schema 1|2                release metadata schema (default 2)
  --notes TEXT                release notes (short)
  --allow-downgrade           sign permission to install over newer versions
  --delta-from VERSION        also sign a delta from this older release; repeatable
  --provenance FILE           the build's provenance (a DSSE envelope of SLSA provenance v1)
  --copy                      no effect (the image is always copied); accepted for old scripts
  --keyring FILE              key environment registry (default $AIRLOCK_KEYRING or
                              ~/.config/airlock/keyring.json): a key registered for another
                              environment than the repository's is refused
  --key KEY                   product signing key; repeatable
  --passphrase-file FILE      passphrase of encrypted private keys

Example:
  airlock release add --dir /srv/fw-repo --product acme/router-x1 \
    --image build/firmware.img --version 1.1.0 --security-version 3 \
    --model x1 --model x1-pro --hw-rev ">=2" --depends bootloader>=2.0.0 \
    --compress zstd --key ~/keys/alice.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		image := fs.String("image", "", "")
		version := fs.String("version", "", "")
		secVer := fs.String("security-version", "", "")
		var models, depends, keyPaths, deltaFrom cli.StringList
		fs.Var(&deltaFrom, "delta-from", "")
		fs.Var(&models, "model", "")
		fs.Var(&depends, "depends", "")
		fs.Var(&keyPaths, "key", "")
		hwRev := fs.String("hw-rev", "", "")
		channel := fs.String("channel", "", "")
		compress := fs.String("compress", "", "")
		frameSize := cli.SizeFlag(fs, "frame-size", 0)
		schema := fs.Int("schema", 0, "")
		notes := fs.String("notes", "", "")
		downgrade := fs.Bool("allow-downgrade", false, "")
		fs.Bool("copy", false, "") // no effect: the image is always copied
		keyring := fs.String("keyring", "", "")
		passFile := fs.String("passphrase-file", "", "")
		provFile := fs.String("provenance", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product, "--image", *image, "--version", *version, "--security-version", *secVer); err != nil {
				return err
			}
			sv, err := strconv.ParseUint(*secVer, 10, 32)
			if err != nil {
				return cli.Usagef("--security-version %q: want a number from 0 to 4294967295", *secVer)
			}
			if len(models) == 0 {
				return cli.Usagef("--model is required")
			}
			if len(keyPaths) == 0 {
				return cli.Usagef("--key is required")
			}
			if *compress != "" && *compress != repo.CompressZstd && *compress != "none" {
				return cli.Usagef("--compress %q: only zstd is supported", *compress)
			}
			if *compress == "none" {
				*compress = ""
			}
			kr, err := keyringFor(e, *keyring)
			if err != nil {
				return err
			}
			prog := e.Progress("release add")
			ro := repoOptions(e, kr)
			ro.Progress = prog.Start
			r, err := repo.OpenWith(*dir, ro)
			if err != nil {
				return err
			}
			signers, err := signersIn(*dir, keyPaths, *passFile)
			if err != nil {
				return err
			}
			info, err := r.AddRelease(repo.ReleaseOptions{
				Product: *product, ImagePath: *image, Version: *version, SecurityVersion: uint32(sv),
				Models: models, HWRev: *hwRev, Channel: *channel, Depends: depends, Compress: *compress,
				Schema: *schema, FrameSize: int64(*frameSize), Notes: *notes, AllowDowngrade: *downgrade, DeltaFrom: deltaFrom, Signers: signers,
				Provenance: *provFile,
			})
			prog.Done()
			if err != nil {
				return err
			}
			fmt.Fprintln(e.Stdout, info.TargetPath)
			e.Printf("airlock: staged %s %s (%d bytes, sha256 %s), signatures %d/%d\n",
				info.Product, info.Version, info.Length, info.SHA256, info.Signatures, info.Threshold)
			for _, d := range info.Deltas {
				printDelta(e, d, info.Length)
			}
			if a := info.Provenance; a != nil {
				printProvenanceAdded(e, a)
			}
			if info.Signatures < info.Threshold {
				e.Printf("airlock: hint: %d more approvals: 'airlock release sign --dir %s --product %s --version %s --key KEY'\n",
					info.Threshold-info.Signatures, *dir, info.Product, info.Version)
			}
			return nil
		}
	},
}

var releaseSignCmd = &cli.Command{
	Name:    "release sign",
	Summary: "approve a pending release (in the repository or a carried file)",
	Usage: `Usage: airlock release sign --dir REPO --product PRODUCT [--version V] --key KEY
       airlock release sign --pending FILE --key KEY
         [--yes] [--keyring FILE] [--passphrase-file FILE]

The first form signs the product's pending metadata in REPO with KEY, which
must be one of the product's keys. With --version, the pending metadata must
contain that release. If nothing is pending (after a key revocation), the
published product metadata is re-signed as a new version.

The second form signs a copy of REPO/staging/<role>.json (or staging/root.json
for a root rotation) carried to another machine, in place, without the
repository. Carry it back and merge it with 'airlock repo import'; the
repository checks that the content is unchanged and the key is authorized.

Before signing, both forms print to stderr what the signature approves, as
'airlock release show' does: each release added or changed (for a carried
file: every release in it) with its environment, target, lengths, hashes,
compression, models, hardware revisions, channel, security version,
dependencies and the changes since the previous release. When stdin is a
terminal, it then asks for confirmation (y/N) unless --yes is given; when
stdin is not a terminal (scripts, CI), it prints the summary and signs
without asking.

Flags:
  --dir REPO               repository directory
  --product PRODUCT        product ID
  --version V              the release you approve
  --pending FILE           a carried pending metadata file
  --key KEY                your signing key
  --keyring FILE           key environment registry; with --dir, a key registered for another
                           environment than the repository's is refused
  --passphrase-file FILE   passphrase of an encrypted private key
  --yes                    sign without asking for confirmation on a terminal

Examples:
  airlock release sign --dir /srv/fw-repo --product acme/router-x1 --version 1.1.0 --key bob.pem
  airlock release sign --pending /media/usb/acme.router-x1.json --key carol.pem
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		version := fs.String("version", "", "")
		pending := fs.String("pending", "", "")
		key := fs.String("key", "", "")
		keyring := fs.String("keyring", "", "")
		passFile := fs.String("passphrase-file", "", "")
		yes := fs.Bool("yes", false, "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--key", *key); err != nil {
				return err
			}
			if *pending != "" {
				if *dir != "" || *product != "" || *version != "" {
					return cli.Usagef("--pending cannot be combined with --dir, --product or --version")
				}
				s, err := loadSigner(*key, *passFile)
				if err != nil {
					return err
				}
				ps, err := repo.DescribePendingFile(*pending)
				if err != nil {
					return err
				}
				e.Printf("airlock: signing %s approves:\n", *pending)
				printPending(e.Stderr, ps)
				if err := confirm(e, *yes, "Sign "+*pending+"?"); err != nil {
					return err
				}
				id, err := repo.SignPendingFile(*pending, s, ps.SignedSHA256) // exactly what was shown
				if err != nil {
					return err
				}
				e.Printf("airlock: signed %s with key %s; carry it back and run 'airlock repo import'\n", *pending, id)
				return nil
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product); err != nil {
				return err
			}
			kr, err := keyringFor(e, *keyring)
			if err != nil {
				return err
			}
			r, err := repo.OpenWith(*dir, repoOptions(e, kr))
			if err != nil {
				return err
			}
			s, err := signerIn(*dir, *key, *passFile)
			if err != nil {
				return err
			}
			ps, err := r.DescribePending(*product)
			shown := ""
			switch {
			case errors.Is(err, repo.ErrNotFound):
				e.Printf("airlock: nothing is pending for %s: the published metadata is re-signed as a new version\n", *product)
			case err != nil:
				return err
			default:
				e.Printf("airlock: signing the pending metadata of %s approves:\n", *product)
				printPending(e.Stderr, ps)
				shown = ps.SignedSHA256
			}
			if err := confirm(e, *yes, "Sign the pending metadata of "+*product+"?"); err != nil {
				return err
			}
			have, need, err := r.SignPending(*product, *version, s, shown) // exactly what was shown
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "%d/%d\n", have, need)
			e.Printf("airlock: %s has %d of %d signatures\n", *product, have, need)
			return nil
		}
	},
}

var releaseListCmd = &cli.Command{
	Name:    "release list",
	Summary: "list published and pending releases with signature counts",
	Usage: `Usage: airlock release list --dir REPO [--product PRODUCT] [--json]

Lists releases, oldest version first per product: state (published or
pending), signatures/threshold of the metadata that holds it, security
version, compression, transport length, the signed deltas (the releases
devices may update from with a delta bundle, and each delta's bytes) and
target path.

Flags:
  --dir REPO          repository directory
  --product PRODUCT   only this product
  --json              print a JSON array with the same fields and the sha256
                      (deltas as [{"from", "length"}])

Example:
  airlock release list --dir /srv/fw-repo --product acme/router-x1
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		asJSON := fs.Bool("json", false, "")
		return func(e *cli.Env, args []string) error {
			r, err := openRepo(e, args, *dir)
			if err != nil {
				return err
			}
			rels, err := r.Releases(*product)
			if err != nil {
				return err
			}
			if *asJSON {
				type releaseJSON struct {
					Product         string      `json:"product"`
					Version         string      `json:"version"`
					State           string      `json:"state"` // published or pending
					Signatures      int         `json:"signatures"`
					Threshold       int         `json:"threshold"`
					SecurityVersion *int64      `json:"security_version,omitempty"`
					Compression     string      `json:"compression,omitempty"`
					Length          int64       `json:"length"`
					SHA256          string      `json:"sha256"`
					TargetPath      string      `json:"target_path"`
					Deltas          []deltaJSON `json:"deltas,omitempty"`
				}
				out := make([]releaseJSON, 0, len(rels))
				for _, rel := range rels {
					j := releaseJSON{Product: rel.Product, Version: rel.Version, State: "pending", Signatures: rel.Signatures,
						Threshold: rel.Threshold, Length: rel.Length, SHA256: rel.SHA256, TargetPath: rel.TargetPath}
					if rel.Published {
						j.State = "published"
					}
					if rel.Metadata != nil {
						sv := int64(rel.Metadata.SecurityVersion)
						j.SecurityVersion, j.Compression = &sv, string(rel.Metadata.Install.Compression)
						for _, d := range rel.Metadata.Deltas {
							j.Deltas = append(j.Deltas, deltaJSON{From: d.From.String(), Length: d.Length()})
						}
					}
					out = append(out, j)
				}
				return cli.WriteJSON(e.Stdout, out)
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRODUCT\tVERSION\tSTATE\tSIGNED\tSECVER\tCOMPRESSION\tLENGTH\tDELTAS\tTARGET")
			for _, rel := range rels {
				state := "pending"
				if rel.Published {
					state = "published"
				}
				sv, comp, deltas := "-", "-", "-"
				if rel.Metadata != nil {
					sv, comp = strconv.FormatUint(uint64(rel.Metadata.SecurityVersion), 10), string(rel.Metadata.Install.Compression)
					var ds []string
					for _, d := range rel.Metadata.Deltas {
						ds = append(ds, fmt.Sprintf("%s:%d", d.From, d.Length()))
					}
					if len(ds) > 0 {
						deltas = strings.Join(ds, ",")
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%d\t%s\t%s\n", rel.Product, rel.Version, state, rel.Signatures, rel.Threshold, sv, comp, rel.Length, deltas, rel.TargetPath)
			}
			return tw.Flush()
		}
	},
}

// deltaJSON is a signed delta in release list --json.
type deltaJSON struct {
	From   string `json:"from"`
	Length int64  `json:"length"`
}
