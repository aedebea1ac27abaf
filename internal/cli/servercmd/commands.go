// Package servercmd holds the server side: serve, server users/tokens, rollout, approval, audit and sim commands of the airlock command line (package
// internal/cli). Each file defines one command group.
package servercmd

import "github.com/airlockfw/airlock/internal/cli"

// commands is filled by the init functions of this package's files.
var commands []*cli.Command

// Commands returns the commands of this group.
func Commands() []*cli.Command { return commands }
