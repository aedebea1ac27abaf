package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/trust"
)

// Config says what a Session verifies against and where the metadata comes
// from.
type Config struct {
	// Root is the trust anchor: the device's factory root, or a root the
	// verifier already trusts. Required. Its trust environment is the
	// device's, and every target's chain must verify from it as the boot
	// stage will verify it.
	Root []byte
	// Store holds the trusted metadata, the rollback and freeze reference
	// (a device's store, or an overlay of it). Nil means a new in-memory
	// store holding only Root: a verifier without history.
	Store trust.Store
	// Source serves the untrusted metadata and payloads. Required.
	Source trust.Source
	// Now is the clock for expiry (nil: time.Now).
	Now func() time.Time
	// Limits overrides the TUF client's size and count limits.
	Limits trust.Limits
	// RequireTimestamp makes an offline bundle as fresh as an online
	// source must be: its timestamp and snapshot must be unexpired too. By
	// default a bundle installs until its root, targets or release role
	// expires (trust.Config.Offline; docs/bundle-format.md, "Freshness").
	RequireTimestamp bool
}

// Session is the outcome of the metadata stage: a TUF client holding
// metadata verified from one source, and the trust environment of the
// anchor. Later stages (Check, Select, OpenPayload) run on it. A Session is
// not safe for concurrent use.
type Session struct {
	client *trust.Client
	src    trust.Source
	root   []byte
	env    string
	// bundle is the source when it is an offline bundle.
	bundle *BundleSource
	// store is the trusted state the session verifies against (the
	// trusted root after the refresh, the log checkpoint the device holds).
	store trust.Store
	// prover reads the log of an online source (transparency stage).
	prover *tlog.Prover
	// stale is the refusal of a bundle's metadata as older than the
	// trusted metadata, when the session verifies the bundle's release
	// against the trusted metadata instead (openTrusted).
	stale error
}

// Open runs the metadata stage: it refreshes the TUF metadata from
// cfg.Source against cfg.Store (root rotation, timestamp, snapshot, targets:
// signatures, thresholds, versions, expiry, limits) and checks that the
// trusted root is still of the anchor's trust environment. Metadata offered
// for another environment is refused with ErrEnvironment. Failures are
// *Error with CheckMetadata.
func Open(ctx context.Context, cfg Config) (*Session, error) {
	if len(cfg.Root) == 0 {
		return nil, fail(CheckMetadata, errors.New("no trusted root given"))
	}
	if cfg.Source == nil {
		return nil, fail(CheckMetadata, errors.New("no source given"))
	}
	st := cfg.Store
	if st == nil {
		st = trust.NewMemStore()
		if err := st.Put("root.json", cfg.Root); err != nil {
			return nil, fail(CheckMetadata, err)
		}
	}
	b, _ := cfg.Source.(*BundleSource)
	tcfg := trust.Config{Now: cfg.Now, Limits: cfg.Limits, Offline: b != nil && !cfg.RequireTimestamp}
	// A bundle's metadata is refreshed in an overlay: if it turns out
	// older than the trusted metadata (stale), the files it put so far are
	// dropped and the trusted metadata is used as it was (openTrusted).
	work := st
	var ov *trust.Overlay
	if b != nil {
		ov = trust.NewOverlay(st)
		work = ov
	}
	c, err := trust.New(work, cfg.Source, tcfg)
	if err != nil {
		return nil, fail(CheckMetadata, err)
	}
	s := &Session{client: c, src: cfg.Source, root: cfg.Root, env: RootEnvironment(cfg.Root), bundle: b, store: st}
	err = c.Refresh(ctx)
	switch {
	case err == nil:
		if ov != nil {
			err = ov.Commit()
		}
	case b == nil:
		err = s.diagnoseEnvironment(ctx, "", err)
	case errors.Is(err, trust.ErrRollback):
		err = s.openTrusted(ctx, st, tcfg, err)
	default:
		err = s.explainBundle(b.TargetPath(), s.diagnoseEnvironment(ctx, b.TargetPath(), err))
	}
	if err != nil {
		return nil, fail(CheckMetadata, err)
	}
	root := c.Trusted().Root
	if got, _ := root.Signed.UnrecognizedFields[release.RootEnvironmentField].(string); s.env != "" && got != s.env {
		return nil, fail(CheckMetadata, fmt.Errorf("%w: the trusted root is now %q, the factory root is %q", ErrEnvironment, got, s.env))
	}
	return s, nil
}

// Client returns the session's TUF client (for summaries, and for callers
// that verify metadata of their own on top, like the agent's director).
func (s *Session) Client() *trust.Client { return s.client }

// Source returns the session's source.
func (s *Session) Source() trust.Source { return s.src }

// Environment returns the trust environment of the anchor ("" when the root
// records none).
func (s *Session) Environment() string { return s.env }

// RootEnvironment reads the trust environment recorded in root metadata
// ("" when none is recorded). It verifies nothing: call it on a trusted
// root.
func RootEnvironment(raw []byte) string {
	var r struct {
		Signed map[string]json.RawMessage `json:"signed"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	var env string
	if json.Unmarshal(r.Signed[release.RootEnvironmentField], &env) != nil {
		return ""
	}
	return env
}

// MaxEnvironmentProbe bounds the root versions read from the source to
// explain a refusal by the environment they claim.
const MaxEnvironmentProbe = 4

// environmentError explains a refusal by the trust environment the offered
// (unverified) metadata claims; the verification error stays in the chain.
type environmentError struct {
	claimed, mine string
	cause         error
}

func (e *environmentError) Error() string {
	return fmt.Sprintf("metadata is from another trust environment: the offered metadata is signed for the %s environment; this device trusts only its %s root", e.claimed, e.mine)
}

func (e *environmentError) Unwrap() []error { return []error{ErrEnvironment, e.cause} }

// diagnoseEnvironment is called when verification of offered metadata has
// already failed. It reads the offered, UNVERIFIED metadata only to say why:
// a development release offered to a production device fails its signature
// checks, and the operator should be told that it is the wrong environment.
func (s *Session) diagnoseEnvironment(ctx context.Context, targetPath string, cause error) error {
	if s.env == "" || !errors.Is(cause, ErrVerification) {
		return cause
	}
	claimed := ""
	for v := int64(1); v <= MaxEnvironmentProbe && claimed == ""; v++ {
		if raw, err := s.src.FetchMetadata(ctx, "root", v, trust.MaxRootSize); err == nil {
			claimed = RootEnvironment(raw)
		}
	}
	if claimed == "" && targetPath != "" {
		if p, _, _, err := release.ParseTargetPath(targetPath); err == nil {
			if raw, err := s.src.FetchMetadata(ctx, p.RoleName(), 0, trust.MaxTargetsSize); err == nil {
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
	if claimed != "" && claimed != s.env {
		return &environmentError{claimed: claimed, mine: s.env, cause: cause}
	}
	return cause
}
