package cli

import (
	"crypto"
	"fmt"

	"github.com/airlockfw/airlock/keys"
)

// keyringFor opens the keyring named by --keyring, else the default one
// ($AIRLOCK_KEYRING or ~/.config/airlock/keyring.json).
func keyringFor(e *Env, flagPath string) (*keys.Keyring, error) {
	p := flagPath
	if p == "" {
		if v := e.Getenv(keys.KeyringEnv); v != "" {
			p = v
		} else {
			p = keys.DefaultKeyringPath()
		}
	}
	return keys.OpenKeyring(p)
}

// registerKeys records pubs under env in the keyring, refusing keys
// registered for another environment.
func registerKeys(kr *keys.Keyring, env, label string, pubs ...crypto.PublicKey) error {
	for _, pub := range pubs {
		id, err := keys.KeyID(pub)
		if err != nil {
			return err
		}
		if err := kr.Register(id, env, label); err != nil {
			return err
		}
	}
	return nil
}

// checkSigners refuses signers whose keys are registered for another
// environment than env.
func checkSigners(kr *keys.Keyring, env string, signers ...crypto.Signer) error {
	for _, s := range signers {
		if s == nil {
			continue
		}
		id, err := keys.KeyID(s.Public())
		if err != nil {
			return err
		}
		if err := kr.Check(id, env); err != nil {
			return fmt.Errorf("%w (see 'airlock key gen --env' and docs/keys.md)", err)
		}
	}
	return nil
}
