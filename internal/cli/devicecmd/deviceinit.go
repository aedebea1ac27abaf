package devicecmd

import "github.com/airlockfw/airlock/internal/cli"

// SimCommands returns the commands that create simulated devices: device
// init. They run on a development host, for demos, tests and the fleet
// simulator; a real device is provisioned by its image build with its
// device.toml and block-device slots. cmd/airlock lists them and
// cmd/airlock-device does not, so the linker leaves their code (device
// provisioning, the config encoder) off every device.
func SimCommands() []*cli.Command { return []*cli.Command{deviceInitCommand()} }

func deviceInitCommand() *cli.Command {
	return &cli.Command{
		Name:    "device init",
		Summary: "create a simulated device with file-backed slots",
		Usage: `Usage: airlock device init --dir DIR --root ROOT.json --model M --hw-rev R
       --slot-size SIZE [--product P] [--image INITIAL.bundle] [--boot BACKEND]
       [--boot-limit N] [--channel C] [--health-cmd CMD] [--health-timeout D] [--write-chunk SIZE]
       [--component NAME=VERSION]...

Creates a simulated device in DIR: DIR/device.toml, the factory root
(DIR/root.json, a copy of ROOT.json: the device's trust anchor), slots A and
B as files of --slot-size bytes, the boot control, the anti-rollback counter
(0) and the TUF state. With --image, the release in INITIAL.bundle is
verified exactly as by 'device install' and installed into slot A, committed.

Flags:
  --dir DIR                directory to create the device in (empty or new)
  --root ROOT.json         factory root metadata (the repository's 1.root.json)
  --model M                device model
  --hw-rev R               hardware revision (uint32)
  --slot-size SIZE         size of each slot: bytes, or a number with a unit
                           (KiB, MiB, GiB, TiB; kB, MB, GB), e.g. 64MiB
  --product P              product ID, e.g. acme/router-x1 (default: the
                           product of --image)
  --image FILE             initial release bundle (airlock repo bundle)
  --boot BACKEND           sim (default), uboot-env or grubenv
  --boot-limit N           trial boot attempts of a new release before the
                           bootloader falls back, counted as U-Boot's
                           bootcount does: 1 .. 255, 1 .. 5 with grubenv
                           (default 1)
  --channel C              release channel (default stable)
  --health-cmd CMD         health check command, split on spaces (no shell);
                           default: none (always healthy)
  --health-timeout D       health check deadline (default 60s)
  --write-chunk SIZE       slot write size, 512 .. 16MiB (default 1MiB)
  --component NAME=VERSION an installed component the device states, for
                           releases that depend on it (repeatable; NAME a
                           product ID or a simple name, VERSION semver),
                           e.g. --component bootloader=2.1.0

Example:
  airlock device init --dir dev1 --root repo/public/metadata/1.root.json \
      --model x1 --hw-rev 3 --slot-size 64MiB --image fw-1.0.0.bundle
`,
		Flags: deviceInitFlags,
	}
}
