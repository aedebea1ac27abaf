package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/pki"
	"github.com/airlockfw/airlock/server/store"
)

func deviceJSON(d store.Device) Device {
	out := Device{
		ID: d.ID, Model: d.Model, Product: d.Product, Channel: d.Channel, HWRev: d.HWRev,
		Tags: d.Tags, CurrentVersion: d.CurrentVersion, SecurityCounter: d.SecurityCounter,
		State: d.State, Slot: d.Slot, LastError: d.LastError, CertSerial: d.CertSerial,
		CertFingerprint: d.CertFingerprint, EnrolledAt: d.EnrolledAt,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if !d.LastSeen.IsZero() {
		t := d.LastSeen
		out.LastSeen = &t
	}
	return out
}

// checkField validates a short admin-supplied string: at most max bytes of
// text without control characters (deviceapi.ValidText), required or not.
func checkField(name, v string, max int, required bool) error {
	if v == "" {
		if required {
			return httpx.Status(http.StatusBadRequest, "%s is required", name)
		}
		return nil
	}
	if len(v) > max {
		return httpx.Status(http.StatusBadRequest, "%s: %d bytes exceeds limit %d", name, len(v), max)
	}
	if !deviceapi.ValidText(v, false) {
		return httpx.Status(http.StatusBadRequest, "%s: control or invalid character", name)
	}
	return nil
}

// deviceHandler is a device API handler, called with the authenticated device.
type deviceHandler func(w http.ResponseWriter, r *http.Request, d store.Device)

// device authenticates a device API request by its client certificate: it
// must chain to the device CA (not a manufacturing CA) and its serial and
// fingerprint must be those of an enrolled device's current certificate.
func (s *Server) device(h deviceHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := s.authDevice(r)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		httpx.InfoFrom(r).DeviceID = d.ID
		h(w, r, d)
	}
}

func (s *Server) authDevice(r *http.Request) (store.Device, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return store.Device{}, httpx.Status(http.StatusUnauthorized, "client certificate required (enroll first)")
	}
	leaf := s.deviceChainLeaf(r)
	if leaf == nil {
		return store.Device{}, httpx.Status(http.StatusForbidden, "client certificate is not issued by this server's device CA")
	}
	d, err := s.db.GetDeviceByCertSerial(r.Context(), pki.SerialHex(leaf))
	if errors.Is(err, store.ErrNotFound) {
		return store.Device{}, httpx.Status(http.StatusForbidden, "client certificate is unknown or revoked")
	}
	if err != nil {
		return store.Device{}, err
	}
	if d.CertFingerprint != Fingerprint(leaf) || d.ID != leaf.Subject.CommonName {
		return store.Device{}, httpx.Status(http.StatusForbidden, "client certificate is unknown or revoked")
	}
	return d, nil
}

// deviceChainLeaf returns the client certificate if a verified chain ends at
// the device CA.
func (s *Server) deviceChainLeaf(r *http.Request) *x509.Certificate {
	for _, chain := range r.TLS.VerifiedChains {
		if len(chain) > 1 && chain[len(chain)-1].Equal(s.deviceCA.Cert) {
			return chain[0]
		}
	}
	return nil
}

// mfgChainLeaf returns the client certificate if a verified chain ends at a
// manufacturing CA.
func (s *Server) mfgChainLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	for _, chain := range r.TLS.VerifiedChains {
		if len(chain) < 2 {
			continue
		}
		root := chain[len(chain)-1]
		for _, m := range s.mfgCAs {
			if root.Equal(m) {
				return chain[0]
			}
		}
	}
	return nil
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req deviceapi.EnrollRequest
	if err := httpx.ReadJSON(w, r, deviceapi.MaxEnrollRequestSize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "%w", err))
		return
	}
	csr, err := ParseCSR([]byte(req.CSR))
	if err != nil {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "%w", err))
		return
	}
	now := s.now()
	var deviceID string
	var existing *store.Device
	switch {
	case req.Token != "":
		hash, err := auth.TokenHash(req.Token)
		if err != nil {
			httpx.WriteError(w, r, httpx.Status(http.StatusUnauthorized, "enrollment token is invalid, expired or used up"))
			return
		}
		tok, err := s.db.ConsumeEnrollmentToken(r.Context(), hash, now)
		if errors.Is(err, store.ErrNotFound) {
			httpx.WriteError(w, r, httpx.Status(http.StatusUnauthorized, "enrollment token is invalid, expired or used up"))
			return
		}
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		if (tok.Product != "" && tok.Product != req.Product) || (tok.Model != "" && tok.Model != req.Model) {
			httpx.WriteError(w, r, httpx.Status(http.StatusForbidden, "enrollment token is restricted to product %q model %q", tok.Product, tok.Model))
			return
		}
		if deviceID, err = auth.RandomID("dev-"); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	default:
		leaf := s.mfgChainLeaf(r)
		if leaf == nil {
			httpx.WriteError(w, r, httpx.Status(http.StatusUnauthorized, "enrollment needs a token or a factory certificate from a trusted manufacturing CA"))
			return
		}
		deviceID = factoryDeviceID(leaf)
		d, err := s.db.GetDevice(r.Context(), deviceID)
		switch {
		case err == nil:
			existing = &d
		case !errors.Is(err, store.ErrNotFound):
			httpx.WriteError(w, r, err)
			return
		}
	}
	httpx.InfoFrom(r).DeviceID = deviceID
	cert, certPEM, err := pki.IssueDeviceCert(s.deviceCA, deviceID, csr.PublicKey, now)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// The audit event commits with the device row (or its new certificate).
	actx := store.WithAudit(r.Context())
	s.audit(actx, deviceID, AuditDeviceEnrolled, map[string]string{"device": deviceID, "product": req.Product, "model": req.Model, "version": req.CurrentVersion})
	if existing != nil {
		err = s.rebindDevice(actx, *existing, cert, req)
	} else {
		err = s.db.CreateDevice(actx, store.Device{
			ID: deviceID, Model: req.Model, Product: req.Product, Channel: req.Channel, HWRev: req.HWRev,
			CurrentVersion: req.CurrentVersion, State: deviceapi.StateIdle,
			CertSerial: pki.SerialHex(cert), CertFingerprint: Fingerprint(cert), EnrolledAt: now,
		})
	}
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if _, err := s.db.AddEvent(r.Context(), store.Event{DeviceID: deviceID, Time: now, Kind: "enrolled", Version: req.CurrentVersion}); err != nil {
		s.log.Warn("failed to record enrollment event", "device_id", deviceID, "err", err)
	}
	httpx.WriteJSON(w, http.StatusCreated, deviceapi.EnrollResponse{
		DeviceID:            deviceID,
		Certificate:         string(certPEM),
		CAChain:             string(s.deviceCA.PEM),
		PollIntervalSeconds: int64(s.cfg.PollInterval / time.Second),
	})
}

// CertRebinder is an optional capability of a store.Store: replacing an
// enrolled device's certificate. Re-enrollment with the same factory
// certificate needs it (409 otherwise); the old certificate stops working
// once it is replaced because devices are looked up by serial.
type CertRebinder interface {
	ReplaceDeviceCert(ctx context.Context, id, serial, fingerprint string) error
}

// rebindDevice re-enrolls a device that already exists (same factory
// certificate): the new certificate replaces the old one.
func (s *Server) rebindDevice(ctx context.Context, d store.Device, cert *x509.Certificate, req deviceapi.EnrollRequest) error {
	if d.Product != req.Product || d.Model != req.Model {
		return httpx.Status(http.StatusConflict, "device %s is enrolled as product %q model %q", d.ID, d.Product, d.Model)
	}
	rb, ok := s.db.(CertRebinder)
	if !ok {
		return httpx.Status(http.StatusConflict, "device %s is already enrolled and this store cannot replace its certificate", d.ID)
	}
	return rb.ReplaceDeviceCert(ctx, d.ID, pki.SerialHex(cert), Fingerprint(cert))
}

// factoryDeviceID derives a stable device ID from a factory certificate's
// issuer and serial: "dev-" + 32 hex digits of SHA-256(issuer DER ‖ serial).
func factoryDeviceID(c *x509.Certificate) string {
	h := sha256.New()
	h.Write(c.RawIssuer)
	h.Write([]byte{0})
	h.Write(c.SerialNumber.Bytes())
	return "dev-" + hex.EncodeToString(h.Sum(nil)[:16])
}

func (s *Server) repository(r *http.Request) deviceapi.Repository {
	base := strings.TrimSuffix(s.cfg.PublicURL, "/")
	if base == "" {
		base = "https://" + r.Host
	}
	return deviceapi.Repository{MetadataURL: base + deviceapi.PathRepoMetadata, TargetsURL: base + deviceapi.PathRepoTargets}
}

func (s *Server) handleCheckin(w http.ResponseWriter, r *http.Request, d store.Device) {
	var req deviceapi.CheckinRequest
	if err := httpx.ReadJSON(w, r, deviceapi.MaxCheckinRequestSize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "%w", err))
		return
	}
	now := s.now()
	rep := store.DeviceReport{
		CurrentVersion: req.CurrentVersion, SecurityCounter: req.SecurityCounter,
		State: req.State, Slot: req.Slot, LastError: req.LastError,
	}
	// A check-in that states what the store already holds changes only
	// when the device was last seen: that goes into the batch written
	// every LastSeenFlushInterval, not into a write of its own.
	var err error
	if !unchanged(d, rep) || !s.seen.note(d.ID, now) {
		err = s.db.Checkin(r.Context(), d.ID, rep, now)
	}
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	s.metrics.Checkins.Inc()
	// The engine reconciles the device's rollout row from what it states.
	d.CurrentVersion, d.State, d.Slot, d.LastError = req.CurrentVersion, req.State, req.Slot, req.LastError
	asg, err := s.rollouts.Checkin(r.Context(), d)
	if err != nil {
		// The check-in itself is recorded; a rollout problem must not cut
		// the device off from the server.
		s.log.Error("rollout assignment failed", "device_id", d.ID, "err", err)
		asg = nil
	}
	httpx.WriteJSON(w, http.StatusOK, deviceapi.CheckinResponse{
		PollIntervalSeconds: int64(s.cfg.PollInterval / time.Second),
		Repository:          s.repository(r),
		ServerTime:          now.UTC().Truncate(time.Second),
		Assignment:          asg,
	})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, d store.Device) {
	var req deviceapi.StatusReport
	if err := httpx.ReadJSON(w, r, deviceapi.MaxStatusRequestSize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "%w", err))
		return
	}
	// An install outcome's audit event commits with the event that records
	// it (store.WithAudit), or not at all.
	actx := r.Context()
	switch req.Kind {
	case deviceapi.StateCommitted, deviceapi.StateRolledBack, deviceapi.StateFailed:
		action := map[string]string{deviceapi.StateCommitted: AuditDeviceUpdated, deviceapi.StateRolledBack: AuditDeviceRolledBack, deviceapi.StateFailed: AuditDeviceFailed}[req.Kind]
		details := map[string]string{"device": d.ID, "version": req.Version}
		if req.Version != "" {
			details["release"] = d.Product + "@" + req.Version
		}
		if req.Message != "" {
			details["message"] = httpx.Truncate(req.Message)
		}
		actx = store.WithAudit(actx)
		s.audit(actx, d.ID, action, details)
	}
	_, err := s.db.AddEvent(actx, store.Event{
		DeviceID: d.ID, Time: s.now(), Kind: req.Kind, Version: req.Version, Message: req.Message, ReportID: req.ID,
	})
	// A resent report (its ID recorded before: the agent missed the
	// acknowledgement) is acknowledged again without a second event or
	// audit entry; the rollout update is idempotent and runs again, in
	// case the first attempt stopped between the event and the rollout.
	dup := errors.Is(err, store.ErrDuplicateReport)
	if dup {
		err = nil
	}
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := s.rollouts.Report(r.Context(), d, req.Kind, req.Version, req.Message); err != nil {
		s.log.Error("rollout report failed", "device_id", d.ID, "err", err)
	}
	if dup {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch req.Kind {
	case deviceapi.StateCommitted, deviceapi.StateRolledBack, deviceapi.StateFailed:
		s.metrics.Installs.WithLabelValues(req.Kind).Inc()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleGetDevice(w http.ResponseWriter, r *http.Request, d store.Device) {
	httpx.WriteJSON(w, http.StatusOK, deviceJSON(d))
}
