package vendorcmd

import (
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/keys"
)

// keyringFor opens the keyring named by --keyring, else the default one
// ($AIRLOCK_KEYRING or ~/.config/airlock/keyring.json).
func keyringFor(e *cli.Env, flagPath string) (*keys.Keyring, error) {
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
