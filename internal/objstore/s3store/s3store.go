// Package s3store is the S3-compatible backend of internal/objstore,
// through github.com/minio/minio-go/v7 (docs/dependencies.md). It works
// with AWS S3 and S3-compatible servers (MinIO, versitygw, Ceph RGW,
// SeaweedFS, R2, ...).
//
// # Threat model
//
// The endpoint is reached over TLS (1.2+, system roots or Config.RootCAs);
// plain HTTP is refused unless Config.InsecureLoopbackHTTP is set, and
// then only for a loopback endpoint (tests, a sidecar gateway). The
// credentials (Config.SecretKey) are never logged or printed: [Store.String]
// and [Config.String] name the endpoint, bucket and prefix only.
//
// What the bucket returns is untrusted: listing entries must be valid
// object names under the prefix (objstore.CheckName) with a size within
// objstore.MaxObjectSize, and each read of an open object is a Range
// request pinned to the ETag seen when it was opened (If-Match), bounded
// to the bytes expected, so an object replaced mid-read is an error, not
// a mixture. Put is one PUT request (never multipart): the object appears
// whole or not at all, and the stream is checked against its declared
// size and SHA-256 before its last byte is sent (objstore.VerifyingReader).
// The SHA-256 is kept as user metadata (x-amz-meta-sha256) so a publisher
// can skip objects already present without downloading them.
package s3store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/airlockfw/airlock/internal/objstore"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvAccessKey    = "AWS_ACCESS_KEY_ID"
	EnvSecretKey    = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken = "AWS_SESSION_TOKEN"
	EnvRegion       = "AWS_REGION"
	// DefaultEndpoint is Config.Endpoint when empty.
	DefaultEndpoint = "s3.amazonaws.com"
	// MaxPrefixLen bounds Config.Prefix.
	MaxPrefixLen = 512
	// sha256Meta is the user metadata key holding the content's SHA-256.
	sha256Meta = "Sha256"
)

// ErrConfig: a Config failed a check.
var ErrConfig = errors.New("invalid S3 storage configuration")

// Config configures a Store.
type Config struct {
	// Endpoint is the S3 server: "host[:port]" or "https://host[:port]"
	// ("http://" only with InsecureLoopbackHTTP); empty means
	// DefaultEndpoint.
	Endpoint string
	// Bucket is the bucket name. Required; it must exist.
	Bucket string
	// Prefix, when set, is prepended to every object name with a "/":
	// several repositories can share a bucket. A valid object name.
	Prefix string
	// AccessKey and SecretKey are the credentials; both empty means
	// anonymous requests. SessionToken is for temporary credentials.
	AccessKey, SecretKey, SessionToken string
	// Region; empty lets the client ask the server.
	Region string
	// RootCAs verifies the endpoint's certificate; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// InsecureLoopbackHTTP allows a plain-HTTP endpoint on a loopback
	// address (tests, a gateway on the same host). Off by default.
	InsecureLoopbackHTTP bool
}

// String names the bucket without credentials.
func (c Config) String() string {
	s := "s3://" + c.Bucket
	if c.Prefix != "" {
		s += "/" + c.Prefix
	}
	return s + " at " + c.Endpoint
}

// ParseURL splits "s3://bucket[/prefix]" into Config.Bucket and
// Config.Prefix.
func ParseURL(raw string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not an s3://bucket[/prefix] URL", ErrConfig, raw)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.TrimSuffix(prefix, "/")
	if err := checkBucket(bucket); err != nil {
		return "", "", err
	}
	if prefix != "" {
		if err := checkPrefix(prefix); err != nil {
			return "", "", err
		}
	}
	return bucket, prefix, nil
}

// ConfigFromEnv returns a Config for rawURL ("s3://bucket[/prefix]") and
// endpoint, with credentials and region from getenv (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION).
func ConfigFromEnv(rawURL, endpoint string, getenv func(string) string) (Config, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return Config{}, err
	}
	return Config{Endpoint: endpoint, Bucket: bucket, Prefix: prefix,
		AccessKey: getenv(EnvAccessKey), SecretKey: getenv(EnvSecretKey),
		SessionToken: getenv(EnvSessionToken), Region: getenv(EnvRegion)}, nil
}

// checkBucket applies S3's bucket naming rules: 3..63 of [a-z0-9.-],
// starting and ending with a letter or digit.
func checkBucket(b string) error {
	ok := len(b) >= 3 && len(b) <= 63
	for i := 0; ok && i < len(b); i++ {
		c := b[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || (c == '.' || c == '-') && i > 0 && i < len(b)-1
	}
	if !ok {
		return fmt.Errorf("%w: bucket name %q: 3..63 of a-z, 0-9, '.', '-'", ErrConfig, b)
	}
	return nil
}

func checkPrefix(p string) error {
	if len(p) > MaxPrefixLen {
		return fmt.Errorf("%w: prefix longer than %d bytes", ErrConfig, MaxPrefixLen)
	}
	if err := objstore.CheckName(p); err != nil {
		return fmt.Errorf("%w: prefix: %w", ErrConfig, err)
	}
	return nil
}

// Store is an objstore.Store in an S3 bucket.
type Store struct {
	core   minio.Core
	bucket string
	prefix string // "" or "p/"
	name   string
}

var _ objstore.Store = (*Store)(nil)

// New checks cfg, connects and checks that the bucket exists.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := checkBucket(cfg.Bucket); err != nil {
		return nil, err
	}
	if cfg.Prefix != "" {
		if err := checkPrefix(cfg.Prefix); err != nil {
			return nil, err
		}
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	host, secure := cfg.Endpoint, true
	if rest, ok := strings.CutPrefix(host, "https://"); ok {
		host = rest
	} else if rest, ok := strings.CutPrefix(host, "http://"); ok {
		host, secure = rest, false
	}
	u, err := url.Parse("//" + host)
	if err != nil || u.Host != host || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: endpoint %q must be [https://]host[:port]", ErrConfig, cfg.Endpoint)
	}
	if !secure {
		if !cfg.InsecureLoopbackHTTP {
			return nil, fmt.Errorf("%w: endpoint %q is plain HTTP; use https:// (plain HTTP is allowed only for loopback tests)", ErrConfig, cfg.Endpoint)
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("%w: plain HTTP endpoint %q is not a loopback address", ErrConfig, cfg.Endpoint)
		}
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, fmt.Errorf("%w: give both %s and %s, or neither", ErrConfig, EnvAccessKey, EnvSecretKey)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}
	tr.ResponseHeaderTimeout = ResponseHeaderTimeout
	opts := &minio.Options{Secure: secure, Transport: tr, Region: cfg.Region, MaxRetries: MaxRetries}
	if cfg.AccessKey != "" {
		opts.Creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		opts.Creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	c, err := minio.New(host, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Store{core: minio.Core{Client: c}, bucket: cfg.Bucket, name: cfg.String()}
	if cfg.Prefix != "" {
		s.prefix = cfg.Prefix + "/"
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("failed to reach %s: %w", s.name, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: bucket %q does not exist at %s", ErrConfig, cfg.Bucket, cfg.Endpoint)
	}
	return s, nil
}

// ResponseHeaderTimeout bounds how long the S3 server may take to start
// answering a request.
const ResponseHeaderTimeout = 60 * time.Second

// MaxRetries bounds the attempts of one request (the client retries
// connection failures and 5xx answers with backoff): an unreachable bucket
// costs a device's request about a second, not the client's default ten
// attempts.
const MaxRetries = 3

// String names the store without credentials.
func (s *Store) String() string { return s.name }

func (s *Store) key(name string) (string, error) {
	if err := objstore.CheckName(name); err != nil {
		return "", err
	}
	return s.prefix + name, nil
}

// mapErr maps a missing object to objstore.ErrNotExist and every other
// failure to objstore.ErrUnavailable.
func mapErr(name string, err error) error {
	r := minio.ToErrorResponse(err)
	if r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey" {
		return fmt.Errorf("%w: %q", objstore.ErrNotExist, name)
	}
	return fmt.Errorf("%w: %w", objstore.ErrUnavailable, err)
}

// info converts what the server said, checking it.
func (s *Store) info(name string, oi minio.ObjectInfo) (objstore.Info, error) {
	if oi.Size < 0 || oi.Size > objstore.MaxObjectSize {
		return objstore.Info{}, fmt.Errorf("%w: %s: %q has %d bytes, outside 0..%d", objstore.ErrTooLarge, s.name, name, oi.Size, int64(objstore.MaxObjectSize))
	}
	in := objstore.Info{Name: name, Size: oi.Size, ModTime: oi.LastModified, ContentType: oi.ContentType}
	if oi.ETag != "" {
		in.ETag = `"` + oi.ETag + `"`
	}
	if oi.Metadata != nil {
		in.CacheControl = oi.Metadata.Get("Cache-Control")
	}
	sum := oi.UserMetadata[sha256Meta]
	if sum == "" && oi.Metadata != nil {
		sum = oi.Metadata.Get("X-Amz-Meta-" + sha256Meta)
	}
	if objstore.IsSHA256Hex(sum) {
		in.SHA256 = sum
	}
	return in, nil
}

// Stat implements objstore.Store.
func (s *Store) Stat(ctx context.Context, name string) (objstore.Info, error) {
	key, err := s.key(name)
	if err != nil {
		return objstore.Info{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return objstore.Info{}, mapErr(name, err)
	}
	return s.info(name, oi)
}

// Open implements objstore.Store: the object is read with Range requests
// pinned to the ETag Stat saw.
func (s *Store) Open(ctx context.Context, name string) (objstore.Object, error) {
	info, err := s.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if info.ETag == "" {
		return nil, fmt.Errorf("%s: %q has no ETag", s.name, name)
	}
	return &object{ctx: ctx, s: s, key: s.prefix + name, info: info}, nil
}

// object reads an S3 object from its current offset with one ranged GET
// per contiguous read; Seek drops the open response.
type object struct {
	ctx  context.Context
	s    *Store
	key  string
	info objstore.Info
	off  int64
	body io.ReadCloser
}

func (o *object) Info() objstore.Info { return o.info }

func (o *object) Read(p []byte) (int, error) {
	if o.off >= o.info.Size {
		return 0, io.EOF
	}
	if o.body == nil {
		var opts minio.GetObjectOptions
		if err := opts.SetMatchETag(strings.Trim(o.info.ETag, `"`)); err != nil {
			return 0, err
		}
		if err := opts.SetRange(o.off, o.info.Size-1); err != nil {
			return 0, err
		}
		body, _, _, err := o.s.core.GetObject(o.ctx, o.s.bucket, o.key, opts)
		if err != nil {
			return 0, fmt.Errorf("failed to read %q from %s at offset %d: %w", o.info.Name, o.s.name, o.off, mapErr(o.info.Name, err))
		}
		o.body = body
	}
	if rest := o.info.Size - o.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	if err == io.EOF {
		o.body.Close()
		o.body = nil
		if o.off < o.info.Size {
			return n, fmt.Errorf("%s: %q ended at %d of %d bytes: %w", o.s.name, o.info.Name, o.off, o.info.Size, io.ErrUnexpectedEOF)
		}
		err = nil
	}
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.info.Size + offset
	default:
		return 0, errors.New("invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("negative position")
	}
	if abs != o.off && o.body != nil {
		o.body.Close()
		o.body = nil
	}
	o.off = abs
	return abs, nil
}

func (o *object) Close() error {
	if o.body != nil {
		err := o.body.Close()
		o.body = nil
		return err
	}
	return nil
}

// Put implements objstore.Store with one PUT request.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, o objstore.PutOptions) (objstore.Info, error) {
	key, err := s.key(name)
	if err != nil {
		return objstore.Info{}, err
	}
	if err := objstore.CheckPutOptions(o); err != nil {
		return objstore.Info{}, err
	}
	sum, err := hex.DecodeString(o.SHA256)
	if err != nil {
		return objstore.Info{}, err
	}
	_, err = s.core.Client.PutObject(ctx, s.bucket, key, objstore.VerifyingReader(r, o), o.Size, minio.PutObjectOptions{
		DisableMultipart: true,
		// The server checks the whole object against the SHA-256 declared
		// up front (S3 additional checksums), so a stream cut short is
		// refused even by a server that would keep what it received.
		UserMetadata: map[string]string{
			sha256Meta:              o.SHA256,
			"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(sum),
		},
		ContentType:  o.ContentType,
		CacheControl: o.CacheControl,
	})
	if err != nil {
		return objstore.Info{}, fmt.Errorf("failed to put %q to %s: %w", name, s.name, err)
	}
	return s.Stat(ctx, name)
}

// List implements objstore.Store.
func (s *Store) List(ctx context.Context, prefix string, max int) ([]objstore.Info, error) {
	if err := objstore.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if max <= 0 {
		max = objstore.DefaultMaxList
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine on an early return
	var out []objstore.Info
	for oi := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("failed to list %q in %s: %w", prefix, s.name, oi.Err)
		}
		name, ok := strings.CutPrefix(oi.Key, s.prefix+prefix)
		if !ok {
			return nil, fmt.Errorf("%s: listing returned %q outside prefix %q", s.name, oi.Key, s.prefix+prefix)
		}
		name = prefix + name
		if err := objstore.CheckName(name); err != nil {
			return nil, fmt.Errorf("%s: listing returned a bad name: %w", s.name, err)
		}
		if len(out) == max {
			return nil, fmt.Errorf("%w: more than %d under %q in %s", objstore.ErrTooMany, max, prefix, s.name)
		}
		in, err := s.info(name, oi)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b objstore.Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.core.Client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(mapErr(name, err), objstore.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("failed to delete %q from %s: %w", name, s.name, err)
	}
	return nil
}

// MaxCAFileSize bounds URLOptions.CAFile.
const MaxCAFileSize = 1 << 20

// URLOptions are what a command line gives besides the s3:// URL.
type URLOptions struct {
	// Endpoint is Config.Endpoint.
	Endpoint string
	// CAFile, when set, is a PEM file of the CA certificates that verify
	// the endpoint (instead of the system roots).
	CAFile string
	// InsecureLoopbackHTTP is Config.InsecureLoopbackHTTP.
	InsecureLoopbackHTTP bool
}

// OpenURL opens the store at rawURL ("s3://bucket[/prefix]") with o and
// the credentials and region of the environment (ConfigFromEnv).
func OpenURL(ctx context.Context, rawURL string, o URLOptions, getenv func(string) string) (*Store, error) {
	cfg, err := ConfigFromEnv(rawURL, o.Endpoint, getenv)
	if err != nil {
		return nil, err
	}
	cfg.InsecureLoopbackHTTP = o.InsecureLoopbackHTTP
	if o.CAFile != "" {
		f, err := os.Open(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		defer f.Close()
		pemData, err := io.ReadAll(io.LimitReader(f, MaxCAFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, o.CAFile, err)
		}
		if len(pemData) > MaxCAFileSize {
			return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrConfig, o.CAFile, MaxCAFileSize)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrConfig, o.CAFile)
		}
	}
	return New(ctx, cfg)
}
