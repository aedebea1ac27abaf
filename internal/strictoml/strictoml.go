// Package strictoml decodes configuration files (device.toml, agent.toml)
// strictly: a named size limit, valid TOML, and no key the target struct
// does not define — a misspelt key is an error, never silently ignored.
// Config files are local and trusted by the operator, but a typo in a
// security setting must not fall back to a default unnoticed.
package strictoml

import (
	"bytes"
	"fmt"

	"github.com/BurntSushi/toml"
)

// Decode decodes data into v. max is the size limit and limitName the
// name of the constant that sets it, for the error message.
func Decode(data []byte, max int, limitName string, v any) error {
	if len(data) > max {
		return fmt.Errorf("config is %d bytes, the limit is %s %d", len(data), limitName, max)
	}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(v)
	if err != nil {
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown keys %q", keys)
	}
	return nil
}
