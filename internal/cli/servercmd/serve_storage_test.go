package servercmd

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/objstore/s3test"
)

// TestServeRefusesABucketWithoutARepository: `airlock serve --storage` on
// a bucket that holds no metadata/1.root.json (not pushed yet, or the
// wrong prefix) does not start, and says what to do (docs/runbooks/
// object-storage.md, step 3).
func TestServeRefusesABucketWithoutARepository(t *testing.T) {
	s3srv := s3test.Start(t)
	s3srv.Bucket(t, "fleet", "")
	env := map[string]string{"AWS_ACCESS_KEY_ID": s3srv.AccessKey, "AWS_SECRET_ACCESS_KEY": s3srv.SecretKey}
	var stderr bytes.Buffer
	e := &cli.Env{Ctx: t.Context(), Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
	code := run(e, []string{"serve", "--data", filepath.Join(t.TempDir(), "data"), "--storage", "s3://fleet/acme",
		"--s3-endpoint", s3srv.Endpoint, "--s3-ca", s3srv.CertFile(), "--listen", "127.0.0.1:0"})
	if code == cli.ExitOK || !strings.Contains(stderr.String(), "holds no metadata/1.root.json (push the repository first: airlock repo push)") {
		t.Fatalf("serve from an empty bucket: exit %d:\n%s", code, stderr.String())
	}
}
