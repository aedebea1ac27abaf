package s3store_test

import (
	"testing"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/internal/objstore/s3store"
)

// FuzzParseURL: an accepted URL names a valid bucket and a valid (or
// empty) prefix, and re-parses to the same parts.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://bucket", "s3://bucket/a/b/", "s3://b", "s3://bucket/../x", "https://bucket", "s3://Bucket/x", "s3://a.b-c/x//y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		bucket, prefix, err := s3store.ParseURL(raw)
		if err != nil {
			return
		}
		if prefix != "" && objstore.CheckName(prefix) != nil {
			t.Fatalf("%q: accepted prefix %q", raw, prefix)
		}
		u := "s3://" + bucket
		if prefix != "" {
			u += "/" + prefix
		}
		b2, p2, err := s3store.ParseURL(u)
		if err != nil || b2 != bucket || p2 != prefix {
			t.Fatalf("%q -> %q %q -> %q %q %v", raw, bucket, prefix, b2, p2, err)
		}
	})
}
