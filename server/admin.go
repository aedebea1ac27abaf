package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "product", "model", "channel", "state", "version", "limit", "offset"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := store.DeviceFilter{
		Product: q.Get("product"), Model: q.Get("model"), Channel: q.Get("channel"),
		State: q.Get("state"), Version: q.Get("version"),
	}
	var err error
	if f.Limit, err = httpx.IntParam(r, "limit", store.MaxListLimit); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if f.Offset, err = httpx.IntParam(r, "offset", store.MaxListOffset); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	devs, err := s.db.ListDevices(r.Context(), f)
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := DeviceList{Devices: make([]Device, 0, len(devs)), Limit: f.Limit, Offset: f.Offset}
	if out.Limit == 0 {
		out.Limit = store.DefaultListLimit
	}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceJSON(d))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) handleAdminDevice(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	d, err := s.db.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "device"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, deviceJSON(d))
}

func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	limit, err := httpx.ListLimit(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	evs, err := s.db.ListEvents(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "device"))
		return
	}
	out := EventList{Events: make([]Event, 0, len(evs))}
	for _, e := range evs {
		out.Events = append(out.Events, Event{ID: e.ID, DeviceID: e.DeviceID, Time: e.Time, Kind: e.Kind, Version: e.Version, Message: e.Message})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateEnrollmentToken(w http.ResponseWriter, r *http.Request) {
	var req CreateEnrollmentTokenRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if req.Uses < 1 || req.Uses > store.MaxTokenUses {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "uses must be in 1..%d", store.MaxTokenUses))
		return
	}
	if maxTTL := int64(MaxEnrollmentTokenTTL / time.Second); req.TTLSeconds < 1 || req.TTLSeconds > maxTTL {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "ttl_seconds must be in 1..%d", maxTTL))
		return
	}
	secret, rec, err := CreateEnrollmentToken(r.Context(), s.db, EnrollmentTokenOptions{
		Product: req.Product, Model: req.Model, Uses: req.Uses, TTL: time.Duration(req.TTLSeconds) * time.Second,
	}, s.now())
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, CreateEnrollmentTokenResponse{
		Token: secret, ID: rec.ID, ExpiresAt: rec.ExpiresAt, Uses: rec.UsesLeft, Product: rec.Product, Model: rec.Model,
	})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "product"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	st, err := s.db.Stats(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	vers, err := s.db.CountDevicesByVersion(r.Context(), r.URL.Query().Get("product"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "product"))
		return
	}
	if vers == nil {
		vers = map[string]int{}
	}
	httpx.WriteJSON(w, http.StatusOK, StatsResponse{Devices: st.Devices, Events: st.Events, DBSizeBytes: st.SizeBytes, Versions: vers})
}
