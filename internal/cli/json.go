package cli

import (
	"encoding/json"
	"io"
)

// WriteJSON writes v as indented JSON for a command's --json output: one
// document per command, a trailing newline, and no HTML escaping, so that
// "<", ">" and "&" in names, messages and URLs read as they are (Go's
// default \u003c escaping is for embedding JSON in HTML, which a command's
// output never is).
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
