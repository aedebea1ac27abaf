package vendorcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/witness"
)

func init() {
	commands = append(commands, witnessServeCmd)
}

// Timeouts of the witness's HTTP server.
const (
	witnessReadTimeout     = 30 * time.Second
	witnessShutdownTimeout = 5 * time.Second
)

var witnessServeCmd = &cli.Command{
	Name:    "witness serve",
	Summary: "run a transparency log witness (C2SP tlog-witness) for the given logs",
	Usage: `Usage: airlock witness serve --dir DIR --listen ADDR --log VKEY... [--name NAME]

Runs a witness: it answers POST /add-checkpoint (C2SP tlog-witness) and
cosigns (cosignature/v1) a checkpoint of a log it knows only when the log's
key signed it and a consistency proof shows that it extends the last
checkpoint the witness cosigned for that log (a fork or a rollback is
refused: 409 with the size it holds, 422 for a proof that does not verify).
The last cosigned checkpoint of each log is kept in DIR/logs, written
crash-safely. On its first run it creates its Ed25519 key DIR/witness.key
(0600, never replaced) named NAME; it prints its cosignature/v1 verifier key
on stdout, the key a transparency policy lists ('airlock repo log init
--witness NAME=VKEY@URL'). It serves plain HTTP: put it behind a TLS
proxy to serve it beyond the host. It stops on SIGINT or SIGTERM.

Flags:
  --dir DIR       the witness's directory: its key and state
  --listen ADDR   address to listen on, e.g. 127.0.0.1:8480
  --log VKEY      a log to witness: its note verifier key, which names its
                  origin (ORIGIN+HASH+KEY); repeatable
  --name NAME     the key's name when DIR has no key yet (e.g. w1.example)

Example:
  airlock witness serve --dir /var/lib/airlock-witness --name w1.example \
    --listen 127.0.0.1:8480 --log airlock.log/00f01b0b41fd17fd+345e2c9c+AT...
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		listen := fs.String("listen", "", "")
		var logs cli.StringList
		fs.Var(&logs, "log", "")
		name := fs.String("name", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--listen", *listen); err != nil {
				return err
			}
			if len(logs) == 0 {
				return cli.Usagef("--log is required")
			}
			if _, err := os.Stat(filepath.Join(*dir, witness.KeyFile)); errors.Is(err, iofs.ErrNotExist) {
				if *name == "" {
					return cli.Usagef("%s has no witness key: --name is required to create one", *dir)
				}
				if _, err := witness.GenerateKey(*dir, *name); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			w, err := witness.Open(*dir, logs)
			if err != nil {
				return err
			}
			if *name != "" && *name != w.Name() {
				return cli.Usagef("--name %q: the key in %s is named %q", *name, *dir, w.Name())
			}
			ln, err := net.Listen("tcp", *listen)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.Stdout, w.VerifierKey())
			e.Printf("airlock: witness %s serving POST /add-checkpoint on http://%s/\n", w.Name(), ln.Addr())
			srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: witnessReadTimeout, ReadTimeout: witnessReadTimeout,
				WriteTimeout: witnessReadTimeout, ErrorLog: log.New(e.Stderr, "airlock: witness: ", 0)}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			select {
			case err := <-done:
				return err
			case <-e.Ctx.Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), witnessShutdownTimeout)
			defer cancel()
			return srv.Shutdown(ctx)
		}
	},
}
