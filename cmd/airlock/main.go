// Command airlock is the full Airlock command line: vendor tooling (keys,
// repository, releases, bundles), the server side (update server, users,
// rollouts, approvals, audit, fleet simulator, demo), the device side
// (install, boot verification, health, agent) and verification. Run
// `airlock help` for the commands. Devices run cmd/airlock-device, which
// carries only the device side.
package main

import (
	"os"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/completion"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
	"github.com/airlockfw/airlock/internal/cli/servercmd"
	"github.com/airlockfw/airlock/internal/cli/vendorcmd"
)

//go:generate sh ../../scripts/depaware.sh

func main() {
	os.Exit(program().Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// program is airlock with every command group and shell completion.
// `airlock verify --show-provenance` reads provenance with the vendor
// side's reader, which airlock-device does not link.
func program() *cli.Program {
	devicecmd.Provenance = vendorcmd.ShowProvenance
	return cli.New("airlock", devicecmd.Commands(), devicecmd.SimCommands(), vendorcmd.Commands(), servercmd.Commands(),
		[]*cli.Command{completion.Command()})
}
