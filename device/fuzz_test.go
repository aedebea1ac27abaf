package device

import (
	"errors"
	"testing"

	"github.com/airlockfw/airlock/internal/strictjson"
)

func FuzzParseConfig(f *testing.F) {
	valid, err := testConfig("/dev", 1<<20).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte("model = \"x1\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "/dev")
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		// What parses re-encodes to a config that parses the same.
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseConfig(out, "/dev"); err != nil {
			t.Fatalf("re-encoded config does not parse: %v\n%s", err, out)
		}
	})
}

func FuzzSlotRecord(f *testing.F) {
	f.Add([]byte(`{"format":1,"slot":"A","status":"committed","version":"1.0.0","root_chain":["e30="],"targets":"e30=","time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"format":1,"slot":"B","status":"invalid","reason":"x","time":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r SlotRecord
		_ = strictjson.Unmarshal(data, &r) // must not panic
	})
}

func TestConfigRejectsUnknownAndOutOfRangeKeys(t *testing.T) {
	valid, err := testConfig("/dev", 1<<20).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig(valid, "/dev"); err != nil {
		t.Fatalf("valid config: %v\n%s", err, valid)
	}
	for _, tt := range []struct{ name, cfg string }{
		{"unknown key", string(valid) + "\nbogus = 1\n"},
		{"missing hw_rev", "model = \"x1\"\nproduct = \"acme/router-x1\"\n"},
		{"hw_rev above uint32", string(valid[:0]) + "model=\"x1\"\nhw_rev=4294967296\nproduct=\"acme/router-x1\"\nroot=\"r\"\nstate_dir=\"s\"\n[slots]\na=\"a\"\nb=\"b\"\nsize=1\n[boot]\nbackend=\"sim\"\npath=\"p\"\n"},
		{"same slot twice", "model=\"x1\"\nhw_rev=1\nproduct=\"acme/router-x1\"\nroot=\"r\"\nstate_dir=\"s\"\n[slots]\na=\"a\"\nb=\"a\"\nsize=1\n[boot]\nbackend=\"sim\"\npath=\"p\"\n"},
		{"unknown boot backend", "model=\"x1\"\nhw_rev=1\nproduct=\"acme/router-x1\"\nroot=\"r\"\nstate_dir=\"s\"\n[slots]\na=\"a\"\nb=\"b\"\nsize=1\n[boot]\nbackend=\"lilo\"\npath=\"p\"\n"},
		{"write chunk too small", "model=\"x1\"\nhw_rev=1\nproduct=\"acme/router-x1\"\nroot=\"r\"\nstate_dir=\"s\"\nwrite_chunk=1\n[slots]\na=\"a\"\nb=\"b\"\nsize=1\n[boot]\nbackend=\"sim\"\npath=\"p\"\n"},
		{"too large", string(make([]byte, MaxConfigSize+1))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.cfg), "/dev")
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("ParseConfig = %v, want ErrConfig", err)
			}
			t.Log(err)
		})
	}
}
