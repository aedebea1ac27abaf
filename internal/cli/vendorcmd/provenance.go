package vendorcmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/provenance"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

func init() {
	commands = append(commands, repoProvenancePolicyCmd, provenanceAttestCmd)
}

var repoProvenancePolicyCmd = &cli.Command{
	Name:    "repo provenance-policy",
	Summary: "set the build provenance a product's releases must carry to be published",
	Usage: `Usage: airlock repo provenance-policy --dir REPO --product PRODUCT
         --builder ID... --source URI... [--build-type URI]... --signer KEY.pub... [--threshold K]
       airlock repo provenance-policy --dir REPO --product PRODUCT --clear
       airlock repo provenance-policy --dir REPO --product PRODUCT

Sets (replaces) the product's provenance publish policy in
REPO/airlock-repo.json (vendor configuration; it is not published). From
then on 'airlock release add' needs --provenance for the product, and the
provenance (a DSSE envelope of an in-toto Statement v1 with a SLSA
provenance v1 predicate) must:

  - be signed by K of the --signer keys (the builder's DSSE signing keys;
    distinct keys count, not signatures);
  - name a builder (runDetails.builder.id) equal to one of --builder;
  - name a source repository and commit (the first
    buildDefinition.resolvedDependencies entry with a uri and a gitCommit
    or sha1 digest, else externalParameters.source) whose repository is one
    of --source (compared without a git+ prefix, an @ref suffix or .git:
    git+https://github.com/acme/fw@refs/heads/main is https://github.com/acme/fw);
  - if --build-type is given, have one of those buildDefinition.buildType;
  - have a subject with the image's SHA-256.

'airlock repo publish' checks every new release of the product against the
policy in force then, so changing the policy also stops releases staged
under the old one. A prod repository publishes no release without
provenance, and needs a policy for each product it publishes.

With --clear the policy is removed; with neither --clear nor policy flags
the current policy is printed.

Flags:
  --dir REPO          repository directory
  --product PRODUCT   product ID, e.g. acme/router-x1 (must be delegated)
  --builder ID        an accepted builder ID; repeatable
  --source URI        an accepted source repository; repeatable
  --build-type URI    an accepted build type; repeatable (default: any)
  --signer KEY.pub    a builder signing key (public key file, Ed25519 or ECDSA); repeatable
  --threshold K       signer keys that must have signed (default 1)
  --clear             remove the product's policy
  --json              print the resulting policy as JSON on stdout

Example:
  airlock repo provenance-policy --dir /srv/fw-repo --product acme/router-x1 \
    --builder https://ci.acme.example/builders/fw --source https://git.acme.example/fw \
    --signer ci-1.pub --signer ci-2.pub --threshold 2
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		var builders, sources, buildTypes, signers cli.StringList
		fs.Var(&builders, "builder", "")
		fs.Var(&sources, "source", "")
		fs.Var(&buildTypes, "build-type", "")
		fs.Var(&signers, "signer", "")
		threshold := fs.Int("threshold", 1, "")
		clearPol := fs.Bool("clear", false, "")
		asJSON := fs.Bool("json", false, "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product); err != nil {
				return err
			}
			setting := len(builders)+len(sources)+len(buildTypes)+len(signers) > 0
			if *clearPol && setting {
				return cli.Usagef("--clear takes no policy flags")
			}
			r, err := repo.Open(*dir)
			if err != nil {
				return err
			}
			switch {
			case *clearPol:
				if err := r.SetProvenancePolicy(*product, nil); err != nil {
					return err
				}
				e.Printf("airlock: removed the provenance policy of %s\n", *product)
				return nil
			case setting:
				pol := &provenance.Policy{Builders: builders, Sources: sources, BuildTypes: buildTypes, Threshold: *threshold}
				for _, p := range signers {
					pub, err := keys.LoadPublic(p)
					if err != nil {
						return fmt.Errorf("--signer %s: %w", p, err)
					}
					pem, err := keys.MarshalPublic(pub)
					if err != nil {
						return err
					}
					pol.Signers = append(pol.Signers, string(pem))
				}
				if err := r.SetProvenancePolicy(*product, pol); err != nil {
					return err
				}
				e.Printf("airlock: set the provenance policy of %s\n", *product)
			}
			pol := r.ProvenancePolicy(*product)
			if pol == nil {
				if *asJSON {
					return cli.WriteJSON(e.Stdout, nil)
				}
				e.Printf("airlock: %s has no provenance policy\n", *product)
				return nil
			}
			ids, err := pol.SignerIDs()
			if err != nil {
				return err
			}
			if *asJSON {
				return cli.WriteJSON(e.Stdout, policyView{Product: *product, Builders: pol.Builders, Sources: pol.Sources,
					BuildTypes: pol.BuildTypes, Signers: ids, Threshold: pol.Threshold})
			}
			bt := strings.Join(pol.BuildTypes, ", ")
			if bt == "" {
				bt = "any"
			}
			return cli.Columns(e.Stdout, [][]string{
				{"product", *product},
				{"builders", strings.Join(pol.Builders, ", ")},
				{"sources", strings.Join(pol.Sources, ", ")},
				{"build types", bt},
				{"signers", fmt.Sprintf("%d of %s", pol.Threshold, strings.Join(ids, ", "))},
			})
		}
	},
}

type policyView struct {
	Product    string   `json:"product"`
	Builders   []string `json:"builders"`
	Sources    []string `json:"sources"`
	BuildTypes []string `json:"build_types"`
	Signers    []string `json:"signers"` // key IDs
	Threshold  int      `json:"threshold"`
}

var provenanceAttestCmd = &cli.Command{
	Name:    "provenance attest",
	Summary: "write a signed SLSA provenance v1 attestation of a firmware image (for builders)",
	Usage: `Usage: airlock provenance attest --image FILE --builder ID --build-type URI
         --source URI --commit HEX [--invocation ID] --key KEY... [--passphrase-file FILE]
         --out FILE

For a build system without in-toto tooling: writes to FILE (which must not
exist) a DSSE envelope (payload type application/vnd.in-toto+json) of an
in-toto Statement v1 whose subject is the image (its file name and
SHA-256) and whose predicate is SLSA provenance v1: buildType, the source
as externalParameters.source and as the first resolvedDependencies entry
({"uri": SOURCE, "digest": {"gitCommit": COMMIT}}), the builder ID and the
invocation ID. Each --key signs the envelope (keys.SignMessage over the
DSSE pre-authentication encoding); the builder's public keys go into the
product's policy ('airlock repo provenance-policy --signer'). Any tool that
writes the same formats (for example the SLSA GitHub generator) does as
well.

Flags:
  --image FILE            the firmware image the build produced (the raw image)
  --builder ID            the builder's ID (runDetails.builder.id), a URI
  --build-type URI        the build type (buildDefinition.buildType)
  --source URI            the source repository, e.g. git+https://git.acme.example/fw@refs/heads/main
  --commit HEX            the source commit (40 or 64 lowercase hex digits)
  --invocation ID         the build's invocation ID (runDetails.metadata.invocationId)
  --key KEY               builder signing key (private); repeatable
  --passphrase-file FILE  passphrase of encrypted private keys
  --out FILE              where to write the envelope

Example:
  airlock provenance attest --image build/fw.img --builder https://ci.acme.example/builders/fw \
    --build-type https://ci.acme.example/buildtypes/make/v1 \
    --source git+https://git.acme.example/fw@refs/heads/main --commit "$(git rev-parse HEAD)" \
    --key ci-1.pem --out build/fw.provenance.json
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		image := fs.String("image", "", "")
		builder := fs.String("builder", "", "")
		buildType := fs.String("build-type", "", "")
		source := fs.String("source", "", "")
		commit := fs.String("commit", "", "")
		invocation := fs.String("invocation", "", "")
		var keyPaths cli.StringList
		fs.Var(&keyPaths, "key", "")
		passFile := fs.String("passphrase-file", "", "")
		out := fs.String("out", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--image", *image, "--builder", *builder, "--build-type", *buildType, "--source", *source, "--commit", *commit, "--out", *out); err != nil {
				return err
			}
			if len(keyPaths) == 0 {
				return cli.Usagef("--key is required")
			}
			sum, err := hashFile(*image)
			if err != nil {
				return err
			}
			signers, err := loadSigners(keyPaths, *passFile)
			if err != nil {
				return err
			}
			src := provenance.ResourceDescriptor{URI: *source, Digest: map[string]string{"gitCommit": *commit}}
			ext, err := json.Marshal(map[string]any{"source": src})
			if err != nil {
				return err
			}
			st := &provenance.Statement{
				Subjects: []provenance.ResourceDescriptor{{Name: filepath.Base(*image), Digest: map[string]string{"sha256": sum}}},
				Predicate: &provenance.SLSA{
					BuildDefinition: provenance.BuildDefinition{BuildType: *buildType, ExternalParameters: ext,
						ResolvedDependencies: []provenance.ResourceDescriptor{src}},
					RunDetails: provenance.RunDetails{Builder: provenance.Builder{ID: *builder}},
				},
			}
			if *invocation != "" {
				st.Predicate.RunDetails.Metadata = &provenance.BuildMetadata{InvocationID: *invocation}
			}
			payload, err := provenance.MarshalStatement(st)
			if err != nil {
				return err
			}
			env, err := provenance.Sign(payload, signers...)
			if err != nil {
				return err
			}
			data, err := env.Marshal()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.Write(append(data, '\n')); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			e.Printf("airlock: wrote %s (subject %s sha256 %s, %d signatures)\n", *out, filepath.Base(*image), sum, len(signers))
			return nil
		}
	},
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("failed to read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// printProvenanceAdded says what release add checked.
func printProvenanceAdded(e *cli.Env, a *provenance.Attestation) {
	signers := "not checked (no policy)"
	if len(a.Signers) > 0 {
		signers = strings.Join(a.Signers, ", ")
	}
	e.Printf("airlock: provenance %s (%d bytes): builder %s, source %s@%s, signed by %s\n",
		a.SHA256, a.Length, a.BuilderID(), a.Source.Repo, a.Source.Commit, signers)
}

// ProvenanceView is what `airlock verify --show-provenance --json` prints
// under "provenance".
type ProvenanceView struct {
	SHA256       string   `json:"sha256"`
	Length       int64    `json:"length"`
	Builder      string   `json:"builder"`
	BuildType    string   `json:"build_type"`
	Source       string   `json:"source,omitempty"`
	Commit       string   `json:"commit,omitempty"`
	InvocationID string   `json:"invocation_id,omitempty"`
	DSSESigners  []string `json:"dsse_signers"`
	// DSSESignersVerified says whether DSSESigners were checked against
	// the product's policy (a repository directory with its
	// airlock-repo.json) or are the key IDs the envelope names.
	DSSESignersVerified bool `json:"dsse_signers_verified"`
	// Role, RoleVersion and Approvers: the product role version that
	// lists the release, and the key IDs whose signatures on it are valid.
	Role        string   `json:"role"`
	RoleVersion int64    `json:"role_version"`
	Approvers   []string `json:"approvers"`
}

// ShowProvenance is what the full airlock binary sets as
// devicecmd.Provenance (cmd/airlock): after `airlock verify --repo` has
// verified rep, it fetches the envelope the signed release metadata binds
// from the same location, checks its digest and length against that
// binding and its subject against the verified image digest, and finds
// the approvers in the verified role version.
func ShowProvenance(ctx context.Context, rep *verify.Report, location string) ([][]string, any, error) {
	meta := rep.Release
	if meta == nil || meta.Provenance == nil {
		return nil, nil, fmt.Errorf("%w: release %s %s binds no provenance in its signed metadata", repo.ErrNoProvenance, rep.Product, rep.Version)
	}
	src, dir := sourceFor(location)
	sha := hex.EncodeToString(meta.Provenance.SHA256[:])
	rc, err := src.OpenTarget(ctx, repo.ProvenanceTarget(meta.Product, meta.Version), sha)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to fetch the provenance of %s %s: %w", rep.Product, rep.Version, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, provenance.MaxEnvelopeSize+1))
	rc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("failed to fetch the provenance of %s %s: %w", rep.Product, rep.Version, err)
	}
	if got, n := provenance.Digest(data); got != sha || n != meta.Provenance.Length {
		return nil, nil, fmt.Errorf("%w: the served envelope (sha256 %s, %d bytes) is not the one the signed release metadata binds (sha256 %s, %d bytes)",
			provenance.ErrProvenance, got, n, sha, meta.Provenance.Length)
	}
	var pol *provenance.Policy
	if dir != "" {
		if r, err := repo.Open(dir); err == nil {
			pol = r.ProvenancePolicy(rep.Product)
		}
	}
	a, err := provenance.Check(data, rep.Product, rep.InstalledSHA256, pol)
	if err != nil {
		return nil, nil, err
	}
	v := ProvenanceView{SHA256: a.SHA256, Length: a.Length, Builder: a.BuilderID(), BuildType: a.BuildType(),
		Source: a.Source.URI, Commit: a.Source.Commit, DSSESigners: a.Signers, DSSESignersVerified: pol != nil}
	if m := a.Statement.Predicate.RunDetails.Metadata; m != nil {
		v.InvocationID = m.InvocationID
	}
	if pol == nil {
		for _, s := range a.Envelope.Signatures {
			if s.KeyID != "" && !slices.Contains(v.DSSESigners, s.KeyID) {
				v.DSSESigners = append(v.DSSESigners, s.KeyID)
			}
		}
	}
	if v.Role, v.RoleVersion, v.Approvers, err = approvers(ctx, src, rep); err != nil {
		return nil, nil, err
	}
	signers := strings.Join(v.DSSESigners, ", ")
	if v.DSSESignersVerified {
		signers += " (verified against the repository's provenance policy)"
	} else {
		signers += " (as the envelope names them; not verified here: give the repository directory to check them against its policy)"
	}
	source := "none named"
	if a.HasSource {
		source = a.Source.URI + " commit " + a.Source.Commit
	}
	rows := [][]string{
		{"provenance", fmt.Sprintf("sha256 %s, %d bytes (bound in the signed release metadata)", v.SHA256, v.Length)},
		{"builder", v.Builder},
		{"build type", v.BuildType},
		{"source", source},
		{"built by (DSSE signers)", signers},
		{"approved by", fmt.Sprintf("%s (valid signatures on %s version %d)", strings.Join(v.Approvers, ", "), v.Role, v.RoleVersion)},
	}
	if v.InvocationID != "" {
		rows = slices.Insert(rows, 3, []string{"invocation", v.InvocationID})
	}
	return rows, v, nil
}

// sourceFor is verify.Repo's reading of a location: an http(s) URL of the
// served public/ or a repository directory (its public/ is read). dir is
// the repository directory ("" for a URL or a bare public/ copy).
func sourceFor(location string) (trust.Source, string) {
	if strings.HasPrefix(location, "https://") || strings.HasPrefix(location, "http://") {
		base := strings.TrimSuffix(location, "/")
		return trust.NewHTTPSource(base+"/metadata/", base+"/targets/", nil), ""
	}
	if fi, err := os.Stat(filepath.Join(location, "public")); err == nil && fi.IsDir() {
		dir := ""
		if _, err := os.Stat(filepath.Join(location, repo.ConfigFile)); err == nil {
			dir = location
		}
		return trust.NewDirSource(filepath.Join(location, "public")), dir
	}
	return trust.NewDirSource(location), ""
}

// approvers returns the product role version verify checked and the key
// IDs whose signatures on it are valid, after checking that this version
// lists the verified target with the verified digest.
func approvers(ctx context.Context, src trust.Source, rep *verify.Report) (string, int64, []string, error) {
	role := rep.Release.Product.RoleName()
	var roleVersion, targetsVersion int64
	for _, ri := range rep.Roles {
		switch ri.Role {
		case role:
			roleVersion = ri.Version
		case "targets":
			targetsVersion = ri.Version
		}
	}
	if roleVersion == 0 || targetsVersion == 0 {
		return "", 0, nil, fmt.Errorf("the verification did not report the versions of targets and %s", role)
	}
	targetsData, err := src.FetchMetadata(ctx, "targets", targetsVersion, repo.MaxMetadataSize)
	if err != nil {
		return "", 0, nil, err
	}
	roleData, err := src.FetchMetadata(ctx, role, roleVersion, repo.MaxMetadataSize)
	if err != nil {
		return "", 0, nil, err
	}
	var md struct {
		Signed struct {
			Targets map[string]struct {
				Hashes map[string]string `json:"hashes"`
			} `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(roleData, &md); err != nil {
		return "", 0, nil, fmt.Errorf("%s version %d: %w", role, roleVersion, err)
	}
	if t, ok := md.Signed.Targets[rep.TargetPath]; !ok || t.Hashes["sha256"] != rep.SHA256 {
		return "", 0, nil, errors.New("the role metadata fetched again does not list the verified target: the repository changed during the check; run it again")
	}
	ids, err := repo.RoleApprovers(targetsData, roleData, role)
	return role, roleVersion, ids, err
}
