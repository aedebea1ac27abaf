package servercmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/demo"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:    "demo",
		Summary: "run the whole story on loopback: sign, serve, update, reject, roll back",
		Usage:   demo.Usage,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
			n := fs.Int("devices", demo.DefaultDevices, "")
			keep := fs.String("keep", "", "")
			return func(e *cli.Env, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				if *n < 1 || *n > demo.MaxDevices {
					return cli.Usagef("--devices must be between 1 and %d", demo.MaxDevices)
				}
				err := demo.Run(e.Ctx, demo.Config{Dir: *keep, Devices: *n, Stdout: e.Stdout, Getenv: e.Getenv,
					Run: func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
						return e.Program.RunEnv(&cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: getenv}, args)
					}})
				if err != nil && *keep != "" {
					return fmt.Errorf("%w (kept in %s)", err, *keep)
				}
				return err
			}
		},
	})
}
