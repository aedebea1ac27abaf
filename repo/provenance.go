package repo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/provenance"
	"github.com/airlockfw/airlock/release"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ProvenanceFileName is the base name of a release's provenance envelope
// in the repository: targets/PRODUCT/VERSION/<sha256>.provenance.json, the
// consistent-snapshot name of the target path ProvenanceTarget, where
// <sha256> is the envelope file's digest that the signed release metadata
// binds (custom.airlock.provenance).
const ProvenanceFileName = "provenance.json"

// ProvenanceTarget is the target-style path of product@version's
// provenance envelope (not a TUF target: the release metadata binds it).
func ProvenanceTarget(p release.Product, v release.Version) string {
	return p.String() + "/" + v.String() + "/" + ProvenanceFileName
}

// ErrNoProvenance: a release needs provenance (its product has a policy,
// or the repository is prod) and has none, or a prod repository has no
// policy to check it against.
var ErrNoProvenance = fmt.Errorf("%w: missing", provenance.ErrProvenance)

// checkPolicies validates the provenance policies of airlock-repo.json.
func checkPolicies(pols map[string]provenance.Policy) error {
	for product, pol := range pols {
		if _, err := release.ParseProduct(product); err != nil {
			return fmt.Errorf("%w: provenance policy: %w", ErrConfig, err)
		}
		if err := pol.Validate(); err != nil {
			return fmt.Errorf("%w: provenance policy of %s: %w", ErrConfig, product, err)
		}
	}
	return nil
}

// ProvenancePolicy returns product's provenance policy, or nil.
func (r *Repo) ProvenancePolicy(product string) *provenance.Policy {
	pol, ok := r.cfg.Provenance[product]
	if !ok {
		return nil
	}
	return &pol
}

// SetProvenancePolicy sets product's provenance publish policy (pol nil
// removes it) in airlock-repo.json. The product must be delegated. From
// then on `release add` requires provenance for the product that the
// policy accepts, and Publish checks every new release of it again.
func (r *Repo) SetProvenancePolicy(product string, pol *provenance.Policy) error {
	unlock, err := r.lock("repo provenance-policy")
	if err != nil {
		return err
	}
	defer unlock()
	p, _, err := productRole(product)
	if err != nil {
		return err
	}
	if _, err := r.delegation(p); err != nil {
		return err
	}
	if pol == nil {
		delete(r.cfg.Provenance, p.String())
		return r.saveConfig()
	}
	if err := pol.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if r.cfg.Provenance == nil {
		r.cfg.Provenance = map[string]provenance.Policy{}
	}
	r.cfg.Provenance[p.String()] = *pol
	return r.saveConfig()
}

// provenanceRequired says why product's releases need provenance to be
// published ("" when they do not).
func (r *Repo) provenanceRequired(product string) string {
	switch {
	case r.Environment() == keys.EnvProd:
		return "a prod repository publishes only releases with acceptable provenance"
	case r.ProvenancePolicy(product) != nil:
		return "the product has a provenance policy"
	}
	return ""
}

// stagedProvenance is an envelope checked at release add, before the image
// is streamed: its subject is checked once the image digest is known.
type stagedProvenance struct {
	data []byte
	att  *provenance.Attestation
}

// readProvenance reads and checks the envelope file for a release of p
// (file "" when none was given): against the product's policy; a product
// with a policy must have provenance, and a prod repository refuses
// provenance it has no policy to check against.
func (r *Repo) readProvenance(p release.Product, file string) (*stagedProvenance, error) {
	pol := r.ProvenancePolicy(p.String())
	if file == "" {
		if pol != nil {
			return nil, fmt.Errorf("%w: %s has a provenance policy: give the build's provenance (release add --provenance)", ErrNoProvenance, p)
		}
		return nil, nil
	}
	if pol == nil && r.Environment() == keys.EnvProd {
		return nil, fmt.Errorf("%w: no provenance policy for %s: a prod repository checks provenance against one (airlock repo provenance-policy)", ErrNoProvenance, p)
	}
	data, err := readLimited(file, provenance.MaxEnvelopeSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read provenance: %w", err)
	}
	att, err := provenance.Check(data, p.String(), "", pol)
	if err != nil {
		return nil, err
	}
	return &stagedProvenance{data: data, att: att}, nil
}

// stage checks the envelope's subject against the installed image's
// digest, writes it to staging/targets/PRODUCT/VERSION/<sha256>.provenance.json
// (crash-safe) and binds it in meta. It returns the file's path.
func (sp *stagedProvenance) stage(r *Repo, meta *release.Metadata) (string, error) {
	if !sp.att.Statement.HasSubjectSHA256(hex.EncodeToString(meta.Installed.SHA256[:])) {
		return "", fmt.Errorf("%w: no subject has the release image's sha256 %x (the installed image, before compression)", provenance.ErrSubject, meta.Installed.SHA256)
	}
	ref := &release.Provenance{Length: sp.att.Length}
	hex.Decode(ref.SHA256[:], []byte(sp.att.SHA256))
	meta.Provenance = ref
	p := r.provenancePath(StagingDir, meta.Product, meta.Version, sp.att.SHA256)
	if err := writeFile(p, sp.data); err != nil {
		return "", err
	}
	return p, nil
}

func (r *Repo) provenancePath(top string, p release.Product, v release.Version, sha string) string {
	dir, base := path.Split(ProvenanceTarget(p, v))
	return r.path(top, TargetsDir, filepath.FromSlash(dir)+sha+"."+base)
}

// checkProvenanceAtPublish is the provenance check of Publish, for a
// target tp that this publish makes installable: the release's provenance
// (if its metadata binds one) must be in the repository with the bound
// digest and length, and pass the product's current policy; a release
// without one is refused when provenanceRequired says so. It returns
// moves with the staged envelope's move to public/ appended.
func (r *Repo) checkProvenanceAtPublish(tp string, tf *metadata.TargetFiles, moves [][2]string) ([][2]string, error) {
	if tf.Custom == nil {
		return moves, nil // not an Airlock release
	}
	meta, err := release.ParseCustom(*tf.Custom)
	if errors.Is(err, release.ErrNoMetadata) {
		return moves, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrInvalidMetadata, tp, err)
	}
	product, name := meta.Product.String(), meta.Product.String()+" "+meta.Version.String()
	ref := meta.Provenance
	if ref == nil {
		if why := r.provenanceRequired(product); why != "" {
			return nil, fmt.Errorf("%w: release %s has no provenance: %s (release add --provenance)", ErrNoProvenance, name, why)
		}
		return moves, nil
	}
	pol := r.ProvenancePolicy(product)
	if pol == nil && r.Environment() == keys.EnvProd {
		return nil, fmt.Errorf("%w: no provenance policy for %s: a prod repository checks provenance against one (airlock repo provenance-policy)", ErrNoProvenance, product)
	}
	sha := hex.EncodeToString(ref.SHA256[:])
	staged := r.provenancePath(StagingDir, meta.Product, meta.Version, sha)
	public := r.provenancePath(PublicDir, meta.Product, meta.Version, sha)
	src := staged
	if _, err := os.Stat(staged); errors.Is(err, fs.ErrNotExist) {
		src = public
	}
	data, err := readLimited(src, provenance.MaxEnvelopeSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: the provenance envelope of %s (%s) is missing from the repository", ErrNoProvenance, name, sha)
	}
	if err != nil {
		return nil, err
	}
	if got, n := provenance.Digest(data); got != sha || n != ref.Length {
		return nil, fmt.Errorf("%w: provenance envelope %s no longer matches the digest and length its release metadata signs", ErrMismatch, src)
	}
	if _, err := provenance.Check(data, product, hex.EncodeToString(meta.Installed.SHA256[:]), pol); err != nil {
		return nil, fmt.Errorf("release %s: %w", name, err)
	}
	if src == staged {
		moves = append(moves, [2]string{staged, public})
	}
	return moves, nil
}

// removeProvenance removes a staged envelope (a failed release add).
func removeProvenance(p string) { durable.Remove(fsys, p) }

// RoleApprovers returns the key IDs of the distinct keys of role's
// delegation in targetsData whose signatures on roleData (the role's
// metadata) are valid: who approved the releases of that role version.
// It parses both files itself and checks that roleData is role's metadata;
// it does not check targetsData's own signatures (the caller verified the
// chain, for example with package verify).
func RoleApprovers(targetsData, roleData []byte, role string) ([]string, error) {
	targets, err := parseMD[metadata.TargetsType](targetsData)
	if err != nil {
		return nil, err
	}
	md, err := parseMD[metadata.TargetsType](roleData)
	if err != nil {
		return nil, err
	}
	rk, _, ok := delegatedRoleKeys(targets, role)
	if !ok {
		return nil, fmt.Errorf("%w: role %q", ErrNoDelegation, role)
	}
	sigs, err := validSignatures(md, rk)
	if err != nil {
		return nil, err
	}
	var ids []string
	seen := map[string]bool{}
	for _, s := range sigs {
		k := rk.keys[s.KeyID]
		pub, err := k.ToPublicKey()
		if err != nil {
			continue
		}
		id, err := keys.KeyID(pub)
		if err != nil || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, s.KeyID)
	}
	sort.Strings(ids)
	return slices.Compact(ids), nil
}
