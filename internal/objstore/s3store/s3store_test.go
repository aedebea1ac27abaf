package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

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

// TestS3Strictness: what the bucket returns is checked. A listing entry
// whose name is not a valid object name is an error, not a path; an
// object replaced after Open is not read as a mixture of two versions
// (every ranged GET is pinned to the ETag Open saw); the configuration
// refuses plain HTTP off loopback and bad bucket names.
func TestS3Strictness(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "strict", "p")
	s, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw := srv.Client(t)
	for _, key := range []string{"p/metadata/.hidden", "p/metadata/a\\b"} {
		if _, err := raw.PutObject(ctx, "strict", key, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("raw put %q: %v", key, err)
		}
		if _, err := s.List(ctx, "metadata/", 0); !errors.Is(err, objstore.ErrName) {
			t.Errorf("List with %q in the bucket = %v, want ErrName", key, err)
		}
		if err := raw.RemoveObject(ctx, "strict", key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	data := bytes.Repeat([]byte("A"), 1<<20)
	if _, err := s.Put(ctx, "targets/fw.bin", bytes.NewReader(data), storetest.Opts(data)); err != nil {
		t.Fatal(err)
	}
	o, err := s.Open(ctx, "targets/fw.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(o, head); err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte("B"), 1<<20)
	if _, err := s.Put(ctx, "targets/fw.bin", bytes.NewReader(other), storetest.Opts(other)); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Seek(512<<10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(o); err == nil {
		t.Errorf("read %d bytes of a replaced object (first %q) after Open saw the old one", len(b), b[:min(len(b), 4)])
	}

	for _, c := range []s3store.Config{
		{Endpoint: "http://192.0.2.1:9000", Bucket: "strict", InsecureLoopbackHTTP: true},
		{Endpoint: "http://127.0.0.1:9000", Bucket: "strict"},
		{Endpoint: srv.Endpoint, Bucket: "Strict"},
		{Endpoint: srv.Endpoint, Bucket: "strict", Prefix: "../x"},
		{Endpoint: srv.Endpoint, Bucket: "strict", AccessKey: "only-the-id"},
	} {
		if _, err := s3store.New(ctx, c); !errors.Is(err, s3store.ErrConfig) {
			t.Errorf("New(%v) = %v, want ErrConfig", c, err)
		}
	}
	missing := srv.Config("no-such-bucket", "")
	if _, err := s3store.New(ctx, missing); !errors.Is(err, s3store.ErrConfig) {
		t.Errorf("New of a missing bucket = %v, want ErrConfig", err)
	}
	wrong := cfg
	wrong.SecretKey = "wrong"
	if _, err := s3store.New(ctx, wrong); err == nil || strings.Contains(err.Error(), cfg.SecretKey) {
		t.Errorf("New with a wrong secret = %v", err)
	}
}
