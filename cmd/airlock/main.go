// Command airlock is the single binary of the Airlock secure firmware update
// system: vendor tooling (keys, repository, releases, bundles), the device
// side (install, boot verification, health) and verification. Run
// `airlock help` for the commands.
package main

import (
	"os"

	"github.com/airlockfw/airlock/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
