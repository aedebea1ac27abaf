package trust

import (
	"fmt"
)

// VerifyBootChain verifies, offline, the metadata stored beside a slot and
// returns the TargetFiles of targetPath. It is what the boot stage uses: no
// network and NO expiry checks (expiry is a freshness check for installing,
// not for booting; a device must still boot after its metadata expired).
//
//  1. factoryRoot (the root compiled into or provisioned on the device) must
//     be signed by a threshold of its own root keys.
//  2. rootChain entries at or below the trusted version are skipped; the rest
//     must be consecutive versions, each signed by a threshold of the
//     previous root's AND its own root keys (spec 5.3.4, 5.3.5).
//  3. targets must be signed by a threshold of the final root's targets keys.
//  4. delegated[i] must be delegated by the previous role (targets, then
//     delegated[i-1]) with paths matching targetPath, and signed by a
//     threshold of the keys that delegator gives it.
//  5. the last role (targets when delegated is empty) must list targetPath.
//
// Snapshot and timestamp are not involved: version rollback of an installed
// image is prevented by the anti-rollback counter, not here.
func VerifyBootChain(factoryRoot []byte, rootChain [][]byte, targets []byte, delegated []DelegatedRole, targetPath string) (*TargetFiles, error) {
	if err := checkTargetPath(targetPath); err != nil {
		return nil, err
	}
	if len(factoryRoot) > MaxRootSize || len(targets) > MaxTargetsSize {
		return nil, fmt.Errorf("boot chain: %w", ErrTooLarge)
	}
	if len(rootChain) > MaxRootChainLength || len(delegated) > MaxDelegations {
		return nil, fmt.Errorf("boot chain: %w: %d roots, %d delegated roles", ErrTooLarge, len(rootChain), len(delegated))
	}
	root, payload, err := parseMetadata[RootType](factoryRoot)
	if err != nil {
		return nil, fmt.Errorf("factory root: %w", err)
	}
	if err := verifySignatures("factory root", rootRole(root, RoleRoot), root.Signatures, payload); err != nil {
		return nil, err
	}
	for i, raw := range rootChain {
		if len(raw) > MaxRootSize {
			return nil, fmt.Errorf("root chain entry %d: %w", i, ErrTooLarge)
		}
		md, _, err := parseMetadata[RootType](raw)
		if err != nil {
			return nil, fmt.Errorf("root chain entry %d: %w", i, err)
		}
		if md.Signed.Version <= root.Signed.Version {
			continue // already covered by a trusted root
		}
		if root, err = verifyNextRoot(root, raw); err != nil {
			return nil, fmt.Errorf("root chain entry %d: %w", i, err)
		}
	}
	md, payload, err := parseMetadata[TargetsType](targets)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	if err := verifySignatures("targets", rootRole(root, RoleTargets), md.Signatures, payload); err != nil {
		return nil, err
	}
	for i, d := range delegated {
		if len(d.Data) > MaxTargetsSize {
			return nil, fmt.Errorf("delegated role %q: %w", d.Name, ErrTooLarge)
		}
		if !delegatesPath(md, d.Name, targetPath) {
			return nil, fmt.Errorf("delegated role %d %q: %w: not delegated for %q by its delegator", i, d.Name, ErrTargetNotFound, targetPath)
		}
		rk, err := delegationKeys(md, d.Name)
		if err != nil {
			return nil, err
		}
		child, payload, err := parseMetadata[TargetsType](d.Data)
		if err != nil {
			return nil, fmt.Errorf("delegated role %q: %w", d.Name, err)
		}
		if err := verifySignatures(fmt.Sprintf("role %q", d.Name), rk, child.Signatures, payload); err != nil {
			return nil, err
		}
		md = child
	}
	tf, ok := md.Signed.Targets[targetPath]
	if !ok {
		return nil, fmt.Errorf("%q: %w in the last role of the chain", targetPath, ErrTargetNotFound)
	}
	return cloneTargetFiles(targetPath, tf), nil
}

// delegatesPath reports whether delegator delegates targetPath to role.
func delegatesPath(delegator *Metadata[TargetsType], role, targetPath string) bool {
	if delegator.Signed.Delegations == nil {
		return false
	}
	for _, r := range delegator.Signed.Delegations.GetRolesForTarget(targetPath) {
		if r.Name == role {
			return true
		}
	}
	return false
}
