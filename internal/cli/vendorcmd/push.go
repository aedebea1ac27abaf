package vendorcmd

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/internal/objstore/s3store"
	"github.com/airlockfw/airlock/server/repofiles"
)

func init() { commands = append(commands, repoPushCmd) }

var repoPushCmd = &cli.Command{
	Name:    "repo push",
	Summary: "copy the repository's public files to an S3 bucket (for airlock serve --storage or a CDN)",
	Usage: `Usage: airlock repo push --dir REPO --to s3://BUCKET[/PREFIX] [--s3-endpoint URL]
         [--s3-ca FILE] [--s3-insecure-loopback-http]

Uploads REPO/public (metadata/ and targets/) to the bucket, in an order in
which a reader of the bucket (airlock serve --storage, a CDN, devices) never
sees metadata naming a file that is not there yet: payloads first, then the
versioned metadata (roles, snapshots, roots), then root.json and, last,
timestamp.json, as read before anything else was copied. Objects already in
the bucket with the same SHA-256 are skipped, so pushing twice uploads
nothing; nothing is ever deleted from the bucket (devices mid-update still
read older snapshots). Each object is verified as it streams and appears
whole or not at all. Run it after every 'repo publish' and 'repo timestamp'.

Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN and AWS_REGION; they are never printed.

Flags:
  --dir REPO                   repository directory
  --to s3://BUCKET[/PREFIX]    destination bucket and optional key prefix
  --s3-endpoint URL            S3 server, https://host[:port] (default s3.amazonaws.com)
  --s3-ca FILE                 PEM CA certificates for the endpoint (default: system roots)
  --s3-insecure-loopback-http  allow an http:// endpoint on a loopback address (tests)

Example:
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
      airlock repo push --dir /srv/fw-repo --to s3://fw-updates/acme \
      --s3-endpoint https://s3.eu-central-1.amazonaws.com
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		to := fs.String("to", "", "")
		var so s3store.URLOptions
		fs.StringVar(&so.Endpoint, "s3-endpoint", "", "")
		fs.StringVar(&so.CAFile, "s3-ca", "", "")
		fs.BoolVar(&so.InsecureLoopbackHTTP, "s3-insecure-loopback-http", false, "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NeedFlags("--to", *to); err != nil {
				return err
			}
			if _, _, err := s3store.ParseURL(*to); err != nil {
				return cli.Usagef("--to: %v", err)
			}
			r, err := openRepo(e, args, *dir)
			if err != nil {
				return err
			}
			src, err := objstore.OpenDir(filepath.Join(r.Dir(), "public"))
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := s3store.OpenURL(e.Ctx, *to, so, e.Getenv)
			if err != nil {
				return err
			}
			res, err := repofiles.Push(e.Ctx, src, dst)
			if res != nil {
				for _, name := range res.Uploaded {
					fmt.Fprintln(e.Stdout, name)
				}
			}
			if err != nil {
				return err
			}
			e.Printf("airlock: pushed %d objects (%d bytes) to %s, %d already there\n", len(res.Uploaded), res.Bytes, dst, len(res.Skipped))
			return nil
		}
	},
}
