package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// RootEnvironmentField is the signed root metadata field naming the trust
// environment (dev, staging, prod) of a repository (see repo.InitOptions).
const RootEnvironmentField = release.RootEnvironmentField

// ErrEnvironment is wrapped when metadata or a release belongs to another
// trust environment than the device's factory root.
var ErrEnvironment = errors.New("metadata is from another trust environment")

// rootEnvironment reads the environment recorded in root metadata ("" when
// none is recorded). It does not verify anything.
func rootEnvironment(raw []byte) string {
	var r struct {
		Signed map[string]json.RawMessage `json:"signed"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	var env string
	if json.Unmarshal(r.Signed[RootEnvironmentField], &env) != nil {
		return ""
	}
	return env
}

// Environment returns the trust environment of the device's factory root.
func (d *Device) Environment() string { return rootEnvironment(d.factoryRoot) }

// diagnoseEnvironment is called when verification of offered metadata has
// already failed. It looks at the offered, UNVERIFIED metadata for the
// environment it claims, only to say why: a development release offered to
// a production device fails its signature checks, and the operator should be
// told that it is the wrong environment, not just "signature invalid".
func (d *Device) diagnoseEnvironment(ctx context.Context, src trust.Source, targetPath string, cause error) error {
	mine := d.Environment()
	if mine == "" {
		return cause
	}
	claimed := ""
	for v := int64(1); v <= 4 && claimed == ""; v++ {
		if raw, err := src.FetchMetadata(ctx, "root", v, trust.MaxRootSize); err == nil {
			claimed = rootEnvironment(raw)
		}
	}
	if claimed == "" {
		if p, _, _, err := release.ParseTargetPath(targetPath); err == nil {
			if raw, err := src.FetchMetadata(ctx, p.RoleName(), 0, trust.MaxTargetsSize); err == nil {
				var role struct {
					Signed struct {
						Targets map[string]struct {
							Custom json.RawMessage `json:"custom"`
						} `json:"targets"`
					} `json:"signed"`
				}
				if json.Unmarshal(raw, &role) == nil {
					if m, err := release.ParseCustom(role.Signed.Targets[targetPath].Custom); err == nil {
						claimed = m.Environment
					}
				}
			}
		}
	}
	if claimed != "" && claimed != mine {
		return fmt.Errorf("%w: the offered metadata is signed for the %s environment; this device trusts only its %s root: %w", ErrEnvironment, claimed, mine, cause)
	}
	return cause
}

// checkTrustedEnvironment refuses verified metadata whose root names another
// environment than the factory root (a root rotation may not move a device
// between environments).
func (d *Device) checkTrustedEnvironment(c *trust.Client) error {
	mine := d.Environment()
	root := c.Trusted().Root
	if mine == "" || root == nil {
		return nil
	}
	got, _ := root.Signed.UnrecognizedFields[RootEnvironmentField].(string)
	if got != mine {
		return fmt.Errorf("%w: the trusted root is now %q, the factory root is %q", ErrEnvironment, got, mine)
	}
	return nil
}
