package cli

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestWriteJSONDoesNotEscapeHTML(t *testing.T) {
	var b bytes.Buffer
	v := map[string]string{"message": "slot <B> & co > 64MiB"}
	if err := WriteJSON(&b, v); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"message\": \"slot <B> & co > 64MiB\"\n}\n"
	if b.String() != want {
		t.Fatalf("WriteJSON = %q, want %q", b.String(), want)
	}
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["message"] != v["message"] {
		t.Fatalf("round trip: %v, %v", back, err)
	}
}
