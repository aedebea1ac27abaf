package adminpool

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/airlockfw/airlock/server"
)

func TestClientSpendsOneUserPerChange(t *testing.T) {
	var got []http.Header
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Clone())
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	reader := User{Token: "read", Secret: []byte("12345678901234567890")}
	writer := User{Token: "write", Secret: []byte("abcdefghijabcdefghij")}
	c, err := New(srv.URL, caPEM, reader, []User{writer})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ OK bool }
	if err := c.Do(context.Background(), "GET", "/x", nil, &out); err != nil || !out.OK {
		t.Fatalf("GET: %v %v", err, out)
	}
	if err := c.Do(context.Background(), "POST", "/x", map[string]int{"a": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), "POST", "/x", nil, nil); !errors.Is(err, ErrNoUsers) {
		t.Fatalf("third request: %v, want ErrNoUsers", err)
	}
	if len(got) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(got))
	}
	if got[0].Get("Authorization") != "Bearer read" || got[0].Get(server.TOTPHeader) != "" {
		t.Errorf("read request headers: %v", got[0])
	}
	if got[1].Get("Authorization") != "Bearer write" || len(got[1].Get(server.TOTPHeader)) != server.TOTPDigits {
		t.Errorf("write request headers: %v", got[1])
	}
}

func TestSecretFromURI(t *testing.T) {
	secret := []byte("0123456789abcdefghij")
	s, err := SecretFromURI(server.OTPAuthURI("alice", secret))
	if err != nil || string(s) != string(secret) {
		t.Fatalf("got %q, %v", s, err)
	}
}
