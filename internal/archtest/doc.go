// Package archtest holds no code: its test checks that every package of the
// module imports only what docs/packages.md allows it to, so that a new
// upward or sideways import is a reviewed change to that map.
package archtest
