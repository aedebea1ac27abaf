// Command airlock-device is the Airlock binary a device runs: the device
// side only (device init, install, boot, health and status; the agent; and
// verify), defined by the explicit command list below. It carries no
// vendor code (repository, key generation, PKCS#11), no server code and no
// simulator; cmd/airlock-device/depaware.txt lists every package it
// imports, and a test fails when that list changes.
package main

import (
	"os"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
)

//go:generate sh ../../scripts/depaware.sh

func main() {
	os.Exit(program().Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// program is the device's command set. Add a command group here only if a
// device needs it; the dependency test then shows what it costs.
func program() *cli.Program {
	return cli.New("airlock-device", devicecmd.Commands())
}
