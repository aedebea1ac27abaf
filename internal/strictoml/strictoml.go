// Package strictoml decodes and encodes Airlock's configuration files
// (device.toml, agent.toml) in a deliberately small subset of TOML 1.0
// (https://toml.io/en/v1.0.0), with no third-party parser in the device
// binary.
//
// Threat model: config files are local and trusted by the operator, so
// the parser defends against mistakes, not attackers: a typo, a misspelt
// key or a construct the operator expects to mean something else must be
// an error naming the line, never a silent fall back to a default. It is
// still bounded (a named size limit, no recursion beyond one table level)
// and never panics on input, because a corrupted file must not take the
// device down.
//
// The subset, enough for every config in docs/ and the tests:
//   - comments, blank lines, LF or CRLF line ends, UTF-8 without a BOM;
//   - bare keys (A-Za-z0-9_-) and quoted keys ("..." or '...');
//   - key = value, one per line;
//   - [table] headers, one level deep, each defined once;
//   - one-line basic strings with every TOML escape (\b \t \n \f \r \" \\
//     \uXXXX \UXXXXXXXX) and one-line literal strings;
//   - integers: decimal with an optional sign, 0x, 0o and 0b, underscores
//     between digits, no leading zeros, 64 bits;
//   - booleans;
//   - arrays of strings, which may span lines, hold comments and end with
//     a comma.
//
// Everything else is refused with the line and the feature: dotted keys,
// dotted table names, inline tables, arrays of tables, nested or
// non-string arrays, floats, dates and times, multi-line strings, invalid
// escapes and control characters, duplicate keys and tables, keys the
// target type does not define ("unknown keys") and values of the wrong
// type ("incompatible types").
//
// Values decode by reflection into structs (fields named by their `toml`
// tag), pointers to structs, map[string]string tables, strings, signed
// integers (range-checked), bools, []string and pointers to those. The
// differential tests check that whatever Decode accepts,
// github.com/BurntSushi/toml decodes to the same value, and that Encode
// writes the same bytes as BurntSushi's encoder.
package strictoml

import (
	"fmt"
)

// Error is a syntax or decoding error at a line of the file.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Decode decodes data into v, a non-nil pointer to a struct. max is the
// size limit and limitName the name of the constant that sets it, for the
// error message.
func Decode(data []byte, max int, limitName string, v any) error {
	if len(data) > max {
		return fmt.Errorf("config is %d bytes, the limit is %s %d", len(data), limitName, max)
	}
	root, err := parse(data)
	if err != nil {
		return err
	}
	return decode(root, v)
}
