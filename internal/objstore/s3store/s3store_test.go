package s3store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/internal/objstore/s3store"
	"github.com/airlockfw/airlock/internal/objstore/s3test"
	"github.com/airlockfw/airlock/internal/objstore/storetest"
)

// TestS3 runs the store conformance tests against a real S3 server
// (versitygw's POSIX gateway over TLS on 127.0.0.1), in a fresh bucket
// under a prefix each time.
func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) objstore.Store {
		cfg := srv.Bucket(t, fmt.Sprintf("conformance-%d", n.Add(1)), "repo/a")
		s, err := s3store.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
