package bundle

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzReader checks that the reader never panics, that whatever it accepts
// re-encodes to exactly the same bytes (one encoding per content), that
// Inspect agrees with it, and that every strict prefix of an accepted bundle
// is rejected as truncated.
func FuzzReader(f *testing.F) {
	f.Add(encode(f, testMeta(0, 0), nil))
	f.Add(encode(f, testMeta(1, 1), []byte{0x42}))
	f.Add(encode(f, testMeta(3, 64, "acme", "acme.router-x1"), testPayload(64)))
	if golden, err := os.ReadFile(filepath.Join("testdata", "v1-small.bundle")); err == nil {
		f.Add(golden)
	}
	f.Add([]byte(Magic + "\x00\x01"))
	f.Add(encode(f, deltaMeta("1.0.0"), testPayload(100)))
	f.Add(encode(f, logMeta(deltaMeta(""), 40), testPayload(100)))
	f.Add(encode(f, logMeta(deltaMeta("1.0.0"), 3), testPayload(100)))

	f.Fuzz(func(t *testing.T, b []byte) {
		m, p, err := readAll(b, Limits{})
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, m, bytes.NewReader(p)); err != nil {
			t.Fatalf("accepted bundle does not re-encode: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), b) {
			t.Fatalf("accepted bundle re-encodes to different bytes:\n got %q\nwant %q", buf.Bytes(), b)
		}
		im, err := Inspect(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("Inspect rejects what NewReader accepts: %v", err)
		}
		if diff := cmp.Diff(m, im); diff != "" {
			t.Fatalf("Inspect metadata (-reader +inspect):\n%s", diff)
		}
		step := 1
		if len(b) > 4096 {
			step = len(b)/4096 + 1
		}
		for i := 0; i < len(b); i += step {
			if _, _, err := readAll(b[:i], Limits{}); !errors.Is(err, ErrTruncated) {
				t.Fatalf("prefix of %d of %d bytes: got %v, want ErrTruncated", i, len(b), err)
			}
		}
	})
}

// FuzzContent builds bundles with valid framing and digests around fuzzed
// content, which FuzzReader rarely reaches through the header digest, and
// checks that the reader and Write accept exactly the same content.
func FuzzContent(f *testing.F) {
	f.Add(tuf("root", 2, 0), tuf("root", 3, 0), tuf("timestamp", 1, 0), "acme.router-x1", "acme/fw.img", []byte("payload"))
	f.Add(tuf("root", 2, 0), tuf("root", 2, 0), []byte(`{"signed":null}`), "a..b", "../fw.img", []byte{})
	f.Add([]byte(`{"signed":{"_type":"root","version":9223372036854775807}}`), []byte(`{"signed":{"_type":"root","version":-9223372036854775808}}`), []byte("{}"), "targets", "a/\x00", []byte{0})

	f.Fuzz(func(t *testing.T, root1, root2, ts []byte, role, path string, payload []byte) {
		m := testMeta(0, int64(len(payload)), role)
		m.RootChain = [][]byte{root1, root2}
		m.Timestamp = ts
		m.TargetPath = path
		if len(role) > 255 || len(path) > 0xffff {
			return // not encodable in the length fields
		}
		b := rawBundle(m, payload)
		werr := Write(&bytes.Buffer{}, m, bytes.NewReader(payload))
		rm, rp, rerr := readAll(b, Limits{})
		if (werr == nil) != (rerr == nil) {
			t.Fatalf("Write and reader disagree: Write: %v, reader: %v", werr, rerr)
		}
		if rerr != nil {
			for _, s := range []error{ErrLimit, ErrMalformed} {
				if errors.Is(rerr, s) {
					return
				}
			}
			t.Fatalf("content error wraps neither ErrLimit nor ErrMalformed: %v", rerr)
		}
		if diff := cmp.Diff(m, rm); diff != "" {
			t.Fatalf("metadata (-want +got):\n%s", diff)
		}
		if !bytes.Equal(rp, payload) {
			t.Fatal("payload differs")
		}
	})
}
