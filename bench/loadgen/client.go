package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
)

// Limits on what the load generator reads from the servers it measures
// (device API responses: deviceapi.MaxResponseSize).
const (
	// MaxFileSize bounds a fetched repository file (timestamp.json).
	MaxFileSize = 1 << 20
	// DialTimeout, HandshakeTimeout and ResponseTimeout bound each step of a
	// request; RequestTimeout bounds a whole request (queueing excluded).
	// DialTimeout allows SYN retransmissions (1 s, 3 s, 7 s, 15 s) when a
	// listen backlog overflows under a burst of 1000 connects.
	DialTimeout      = 30 * time.Second
	HandshakeTimeout = 30 * time.Second
	ResponseTimeout  = 30 * time.Second
	RequestTimeout   = 60 * time.Second
)

// Errors of a measured request; each failed request counts as an error of
// its phase.
var (
	// ErrStatus: the server answered with an unexpected HTTP status.
	ErrStatus = errors.New("unexpected http status")
	// ErrResponse: the response body was too large or malformed.
	ErrResponse = errors.New("bad response")
)

// newTransport returns a transport that holds at most one connection (one
// simulated device = one connection) and its own TLS session cache, so a
// closed connection is re-established with TLS session resumption.
func newTransport(roots *x509.CertPool, cert *tls.Certificate, keepAlive bool) *http.Transport {
	tc := &tls.Config{
		RootCAs:            roots,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(1),
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: DialTimeout}
	return &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   HandshakeTimeout,
		ResponseHeaderTimeout: ResponseTimeout,
		DisableKeepAlives:     !keepAlive,
		DisableCompression:    true,
		MaxIdleConns:          1,
		MaxIdleConnsPerHost:   1,
		MaxConnsPerHost:       1,
		IdleConnTimeout:       10 * time.Minute,
		// HTTP/1.1 against both airlock and nginx, so the baseline compares
		// like with like.
		ForceAttemptHTTP2: false,
	}
}

// device is one simulated device: its key, its client certificate and its
// own connection to the server.
type device struct {
	id     string
	cert   tls.Certificate
	client *http.Client
}

// enroll generates a P-256 key and CSR and enrolls with token over a fresh
// connection (full TLS handshake, no client certificate).
func enroll(ctx context.Context, base string, roots *x509.CertPool, token string) (*device, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate device key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bench"}}, key)
	if err != nil {
		return nil, fmt.Errorf("failed to create csr: %w", err)
	}
	body, err := json.Marshal(deviceapi.EnrollRequest{
		Token: token, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		Model: "bench", HWRev: 1, Product: "acme/bench", Channel: "stable", CurrentVersion: "1.0.0",
	})
	if err != nil {
		return nil, err
	}
	tr := newTransport(roots, nil, false)
	defer tr.CloseIdleConnections()
	var er deviceapi.EnrollResponse
	if err := postJSON(ctx, &http.Client{Transport: tr}, base+deviceapi.PathEnroll, body, http.StatusCreated, &er); err != nil {
		return nil, fmt.Errorf("failed to enroll: %w", err)
	}
	blk, rest := pem.Decode([]byte(er.Certificate))
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: enrollment certificate is not one PEM certificate", ErrResponse)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: enrollment certificate: %w", ErrResponse, err)
	}
	if leaf.Subject.CommonName != er.DeviceID {
		return nil, fmt.Errorf("%w: certificate CN %q is not device id %q", ErrResponse, leaf.Subject.CommonName, er.DeviceID)
	}
	d := &device{id: er.DeviceID, cert: tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key, Leaf: leaf}}
	d.reset(roots)
	return d, nil
}

// reset gives d a new client: no open connection and no TLS session to
// resume.
func (d *device) reset(roots *x509.CertPool) {
	if d.client != nil {
		d.client.CloseIdleConnections()
	}
	d.client = &http.Client{Transport: newTransport(roots, &d.cert, true), Timeout: RequestTimeout}
}

// checkinBody is the check-in every simulated device sends.
var checkinBody = func() []byte {
	b, err := json.Marshal(deviceapi.CheckinRequest{CurrentVersion: "1.0.0", SecurityCounter: 1, State: deviceapi.StateIdle, Slot: deviceapi.SlotA})
	if err != nil {
		panic("internal error: " + err.Error())
	}
	return b
}()

// checkin posts one check-in and reports whether the TLS session was resumed.
func (d *device) checkin(ctx context.Context, base string) (resumed bool, err error) {
	var out deviceapi.CheckinResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+deviceapi.PathCheckin, bytes.NewReader(checkinBody))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	resumed = resp.TLS != nil && resp.TLS.DidResume
	if err := decodeResponse(resp, http.StatusOK, &out); err != nil {
		return resumed, err
	}
	if iv, err := deviceapi.PollInterval(out.PollIntervalSeconds); err != nil || iv == 0 {
		return resumed, fmt.Errorf("%w: poll_interval_seconds %d", ErrResponse, out.PollIntervalSeconds)
	}
	return resumed, nil
}

// fetcher downloads one static file over its own connection.
type fetcher struct{ client *http.Client }

// fetch GETs url and checks that the body has exactly size bytes.
func (f *fetcher) fetch(ctx context.Context, url string, size int64) (resumed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	resumed = resp.TLS != nil && resp.TLS.DidResume
	if resp.StatusCode != http.StatusOK {
		return resumed, fmt.Errorf("%w: %s", ErrStatus, resp.Status)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxFileSize+1))
	if err != nil {
		return resumed, err
	}
	if n != size {
		return resumed, fmt.Errorf("%w: got %d bytes, want %d", ErrResponse, n, size)
	}
	return resumed, nil
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, want, out)
}

// decodeResponse checks the status and decodes a device API response into
// out with deviceapi.DecodeResponse (at most deviceapi.MaxResponseSize,
// strict); the body is drained so the connection can be reused.
func decodeResponse(resp *http.Response, want int, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, deviceapi.MaxResponseSize+1))
	if err != nil {
		return fmt.Errorf("failed to read response: %w", err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%w: %s: %q", ErrStatus, resp.Status, truncate(b))
	}
	if err := deviceapi.DecodeResponse(b, out); err != nil {
		return fmt.Errorf("%w: %w", ErrResponse, err)
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
