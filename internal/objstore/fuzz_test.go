package objstore_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"path"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/objstore"
)

// FuzzCheckName: an accepted name is relative, clean, has no dot or empty
// segment, no backslash or control character, and fits MaxNameLen.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a.json", "targets/acme/x1/1.0.0/ab.bin", "../a", "a//b", "/a", ".put-1", "a\\b", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if objstore.CheckName(name) != nil {
			return
		}
		if name == "" || len(name) > objstore.MaxNameLen || strings.HasPrefix(name, "/") || path.Clean(name) != name {
			t.Fatalf("accepted %q", name)
		}
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg[0] == '.' {
				t.Fatalf("accepted %q with segment %q", name, seg)
			}
		}
		if strings.ContainsAny(name, "\\\x00\x7f") {
			t.Fatalf("accepted %q", name)
		}
	})
}

// FuzzVerifyingReader: the reader yields all of the declared bytes only
// when the stream has exactly the declared size and SHA-256; otherwise it
// fails with ErrContent before handing over the last declared byte.
func FuzzVerifyingReader(f *testing.F) {
	f.Add([]byte("hello"), []byte("hello"), 0)
	f.Add([]byte("hello"), []byte("hellO"), 0)
	f.Add([]byte("hello"), []byte("hell"), 0)
	f.Add([]byte("hello"), []byte("hello!"), 1)
	f.Fuzz(func(t *testing.T, declared, actual []byte, chunk int) {
		sum := sha256.Sum256(declared)
		o := objstore.PutOptions{Size: int64(len(declared)), SHA256: hex.EncodeToString(sum[:])}
		var r io.Reader = bytes.NewReader(actual)
		if chunk > 0 {
			r = &chunked{r: r, n: chunk%7 + 1}
		}
		got, err := io.ReadAll(objstore.VerifyingReader(r, o))
		if bytes.Equal(declared, actual) {
			if err != nil || !bytes.Equal(got, declared) {
				t.Fatalf("matching stream: %v, %d bytes", err, len(got))
			}
			return
		}
		if !errors.Is(err, objstore.ErrContent) {
			t.Fatalf("mismatching stream: err %v", err)
		}
		if len(got) >= len(declared) && len(declared) > 0 {
			t.Fatalf("mismatching stream handed over %d of %d declared bytes", len(got), len(declared))
		}
	})
}

type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}
