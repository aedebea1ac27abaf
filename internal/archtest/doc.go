// Package archtest holds no code: its tests check that every package of the
// module imports only what docs/packages.md allows it to, so that a new
// upward or sideways import is a reviewed change to that map, and that
// docs/dependencies.md lists exactly the direct requirements of go.mod.
package archtest
