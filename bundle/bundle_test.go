package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// tuf returns a minimal TUF metadata file of the given type and version,
// padded with a custom field to at least size bytes.
func tuf(typ string, version int64, size int) []byte {
	b := fmt.Appendf(nil, `{"signatures":[],"signed":{"_type":%q,"version":%d,"expires":"2030-01-01T00:00:00Z","spec_version":"1.0.31","x-pad":""}}`, typ, version)
	if pad := size - len(b); pad > 0 {
		i := bytes.Index(b, []byte(`"x-pad":""`)) + len(`"x-pad":"`)
		b = append(b[:i], append(bytes.Repeat([]byte{'a'}, pad), b[i:]...)...)
	}
	return b
}

// testMeta returns valid metadata with roots root files starting at version
// 2 and the given delegated role names.
// deltaMeta is a delta bundle's metadata, from the release with version from.
func deltaMeta(from string) *Metadata {
	m := testMeta(1, 100, "acme", "acme.router-x1")
	m.PayloadLength = int64(len(testPayload(100)))
	if from == strings.Repeat("9", MaxDeltaFromLen) {
		m.PayloadLength = 1
	}
	m.DeltaFrom = from
	return m
}

// logMeta adds a log proof of n bytes to m.
func logMeta(m *Metadata, n int) *Metadata {
	m.LogProof = bytes.Repeat([]byte{'p'}, n)
	return m
}

func TestLogProofFormat(t *testing.T) {
	b := encode(t, logMeta(deltaMeta(""), 10), testPayload(100))
	if v := binary.BigEndian.Uint16(b[len(Magic):]); v != FormatVersionLog {
		t.Fatalf("a bundle with a log proof is format %d, want %d", v, FormatVersionLog)
	}
	for i := 0; i < len(b)-TrailerSize-100; i++ {
		if _, _, err := readAll(b[:i], Limits{}); !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMagic) {
			t.Fatalf("prefix of %d bytes: %v, want ErrTruncated", i, err)
		}
	}
	for _, c := range []struct {
		n    int
		want error
	}{{0, ErrLimit}, {MaxLogProofSize + 1, ErrLimit}} {
		m := logMeta(deltaMeta(""), c.n)
		if err := Write(io.Discard, m, bytes.NewReader(testPayload(100))); !errors.Is(err, c.want) {
			t.Errorf("log proof of %d bytes: Write: %v, want %v", c.n, err, c.want)
		}
	}
}

func TestDeltaBundleFormat(t *testing.T) {
	b := encode(t, deltaMeta("1.0.0"), testPayload(100))
	if v := binary.BigEndian.Uint16(b[len(Magic):]); v != FormatVersionDelta {
		t.Fatalf("a delta bundle is format %d, want %d", v, FormatVersionDelta)
	}
	if v := binary.BigEndian.Uint16(encode(t, testMeta(1, 0), nil)[len(Magic):]); v != FormatVersion {
		t.Fatalf("a whole bundle is format %d, want %d (old devices read it)", v, FormatVersion)
	}
	for _, c := range []struct {
		from string
		want error
	}{
		{strings.Repeat("1", MaxDeltaFromLen+1), ErrLimit},
		{"1.0 0", ErrMalformed},
		{"1.0.0\n", ErrMalformed},
		{"1.0.0\x7f", ErrMalformed},
	} {
		m := deltaMeta("x")
		m.DeltaFrom = c.from
		var buf bytes.Buffer
		if err := Write(&buf, m, bytes.NewReader(testPayload(100))); !errors.Is(err, c.want) {
			t.Errorf("Write with base %q: %v, want %v", c.from, err, c.want)
		}
	}
	// A format 1 bundle relabelled as format 2 lacks the field: refused.
	one := encode(t, testMeta(1, 0), nil)
	binary.BigEndian.PutUint16(one[len(Magic):], FormatVersionDelta)
	if _, err := NewReader(bytes.NewReader(one), Limits{}); err == nil {
		t.Error("a relabelled format 1 bundle was read as a delta")
	}
}

func testMeta(roots int, payloadLen int64, delegated ...string) *Metadata {
	m := &Metadata{
		Timestamp:     tuf("timestamp", 7, 0),
		Snapshot:      tuf("snapshot", 7, 0),
		Targets:       tuf("targets", 3, 0),
		TargetPath:    "acme/router-x1/1.1.0/firmware.img",
		PayloadLength: payloadLen,
	}
	for i := range roots {
		m.RootChain = append(m.RootChain, tuf("root", int64(2+i), 0))
	}
	for _, d := range delegated {
		m.Delegated = append(m.Delegated, Role{Name: d, Data: tuf("targets", 1, 0)})
	}
	return m
}

func testPayload(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

func encode(t testing.TB, m *Metadata, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, m, bytes.NewReader(payload)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// rawBundle encodes m and payload with correct digests but without any of
// Write's checks, to build bundles a correct writer would refuse to produce.
func rawBundle(m *Metadata, payload []byte) []byte {
	b := encodeHeader(m)
	b = append(b, payload...)
	sum := sha256.Sum256(payload)
	return appendTrailer(b, int64(len(payload)), sum[:])
}

// readAll parses a bundle fully and returns its metadata and payload.
func readAll(b []byte, lim Limits) (*Metadata, []byte, error) {
	r, err := NewReader(bytes.NewReader(b), lim)
	if err != nil {
		return nil, nil, err
	}
	p, err := io.ReadAll(r.Payload())
	if err != nil {
		return nil, nil, err
	}
	return r.Metadata(), p, nil
}

func TestRoundTripReencodesToSameBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       *Metadata
		payload []byte
	}{
		{"no roots, no delegations, empty payload", testMeta(0, 0), nil},
		{"root chain and delegations", testMeta(3, 1000, "acme", "acme.router-x1"), testPayload(1000)},
		{"full limits of counts", testMeta(MaxRootChain, 10, "a", "b", "c", "d", "e", "f", "g", "h"), testPayload(10)},
		{"multi-MiB payload", testMeta(1, 5<<20+3, "acme.router-x1"), testPayload(5<<20 + 3)},
		{"delta bundle (format 2)", deltaMeta("1.0.0"), testPayload(100)},
		{"delta bundle, longest base version", deltaMeta(strings.Repeat("9", MaxDeltaFromLen)), testPayload(1)},
		{"log proof (format 3)", logMeta(deltaMeta(""), 300), testPayload(100)},
		{"delta bundle with a log proof (format 3)", logMeta(deltaMeta("1.0.0"), 1), testPayload(100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encode(t, tc.m, tc.payload)
			m, p, err := readAll(b, Limits{})
			if err != nil {
				t.Fatalf("reading a bundle Write produced: %v", err)
			}
			if diff := cmp.Diff(tc.m, m); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if !bytes.Equal(p, tc.payload) {
				t.Errorf("payload differs: got %d bytes, want %d", len(p), len(tc.payload))
			}
			if again := encode(t, m, p); !bytes.Equal(again, b) {
				t.Errorf("re-encoding the parsed bundle gives different bytes")
			}
			if im, err := Inspect(bytes.NewReader(b)); err != nil {
				t.Errorf("Inspect: %v", err)
			} else if diff := cmp.Diff(tc.m, im); diff != "" {
				t.Errorf("Inspect metadata (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGoldenV1 pins the version 1 byte layout: a change to the encoding must
// be a deliberate format version change. Run with -update to rewrite.
func TestGoldenV1(t *testing.T) {
	b := encode(t, testMeta(2, 16, "acme.router-x1"), []byte("firmware-payload"))
	path := filepath.Join("testdata", "v1-small.bundle")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding of the golden bundle changed; this breaks format version %d", FormatVersion)
	}
	if _, err := Inspect(bytes.NewReader(want)); err != nil {
		t.Fatalf("golden bundle does not parse: %v", err)
	}
}

// countingReader counts the bytes taken from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func TestNewReaderConsumesNoPayloadByte(t *testing.T) {
	m := testMeta(2, 4096, "acme.router-x1")
	b := encode(t, m, testPayload(4096))
	cr := &countingReader{r: bytes.NewReader(b)}
	if _, err := NewReader(cr, Limits{}); err != nil {
		t.Fatal(err)
	}
	if want := headerSize(m); cr.n != want {
		t.Fatalf("NewReader consumed %d bytes, the header is %d bytes", cr.n, want)
	}
}

// TestStreamingMemoryDoesNotScaleWithPayload streams a 256 MiB payload from a
// generator through Write and the Reader and checks the total allocated
// memory stays far below the payload size.
func TestStreamingMemoryDoesNotScaleWithPayload(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	m := testMeta(3, size, "acme", "acme.router-x1")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	genSum := sha256.New()
	gen := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{2}), size), genSum)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Write(pw, m, gen)) }()
	r, err := NewReader(pr, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gotSum := sha256.New()
	n, err := io.Copy(gotSum, r.Payload())
	if err != nil {
		t.Fatalf("streaming payload: %v", err)
	}

	runtime.ReadMemStats(&after)
	if n != size {
		t.Fatalf("read %d payload bytes, want %d", n, size)
	}
	if !bytes.Equal(gotSum.Sum(nil), genSum.Sum(nil)) {
		t.Fatal("streamed payload differs from the generated one")
	}
	const budget = 4 << 20
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("streamed %d payload bytes with %d bytes allocated in total", size, alloc)
	if alloc > budget {
		t.Fatalf("streaming %d payload bytes allocated %d bytes, budget %d: the payload is being buffered", size, alloc, budget)
	}
}

func TestEveryTruncationIsRejected(t *testing.T) {
	b := encode(t, testMeta(2, 64, "acme.router-x1"), testPayload(64))
	for i := range len(b) {
		_, _, err := readAll(b[:i], Limits{})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("bundle cut to %d of %d bytes: got %v, want ErrTruncated", i, len(b), err)
		}
	}
}

// TestPayloadIsNeverAShortRead checks that a truncated payload surfaces as an
// error from Read, not as an io.EOF after fewer bytes.
func TestPayloadIsNeverAShortRead(t *testing.T) {
	b := encode(t, testMeta(0, 1000, "acme.router-x1"), testPayload(1000))
	hs := int(headerSize(testMeta(0, 1000, "acme.router-x1")))
	r, err := NewReader(bytes.NewReader(b[:hs+500]), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := r.Payload().Read(buf)
		total += n
		if err == io.EOF {
			t.Fatalf("got io.EOF after %d of 1000 payload bytes", total)
		}
		if err != nil {
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("got %v, want ErrTruncated", err)
			}
			break
		}
	}
	if _, err := r.Payload().Read(buf); !errors.Is(err, ErrTruncated) {
		t.Fatalf("error is not sticky: second Read gave %v", err)
	}
}

func TestFlippedBytesAreRejected(t *testing.T) {
	m := testMeta(2, 64, "acme.router-x1")
	b := encode(t, m, testPayload(64))
	hs := int(headerSize(m))
	ps := hs + 64
	for i := range len(b) {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		_, _, err := readAll(c, Limits{})
		if err == nil {
			t.Fatalf("flipped byte %d of %d accepted", i, len(b))
		}
		switch {
		case i >= hs-DigestSize && i < hs:
			if !errors.Is(err, ErrHeaderDigest) {
				t.Errorf("flipped header digest byte %d: got %v, want ErrHeaderDigest", i, err)
			}
		case i >= hs:
			if !errors.Is(err, ErrTrailer) {
				t.Errorf("flipped payload/trailer byte %d (payload %d..%d): got %v, want ErrTrailer", i, hs, ps, err)
			}
		}
	}
}

func TestAppendedJunkIsRejected(t *testing.T) {
	b := encode(t, testMeta(1, 64), testPayload(64))
	for _, tc := range []struct {
		name string
		junk []byte
	}{
		{"one zero byte", []byte{0}},
		{"a second trailer", b[len(b)-TrailerSize:]},
		{"a second bundle", b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readAll(append(bytes.Clone(b), tc.junk...), Limits{})
			if !errors.Is(err, ErrTrailer) {
				t.Fatalf("got %v, want ErrTrailer", err)
			}
		})
	}
}

func TestNotABundle(t *testing.T) {
	b := encode(t, testMeta(0, 1), []byte{1})
	for _, tc := range []struct {
		name   string
		mutate func([]byte)
		want   error
	}{
		{"wrong magic", func(b []byte) { copy(b, "PK\x03\x04ABCD") }, ErrMagic},
		{"future version", func(b []byte) { b[len(Magic)+1] = FormatVersionLog + 1 }, ErrVersion},
		{"version zero", func(b []byte) { b[len(Magic)+1] = 0 }, ErrVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bytes.Clone(b)
			tc.mutate(c)
			if _, err := NewReader(bytes.NewReader(c), Limits{}); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestInvalidContentIsRejected checks that Write refuses metadata that breaks
// a limit or rule, and that the reader rejects the same content when it is
// encoded anyway, with the same sentinel.
func TestInvalidContentIsRejected(t *testing.T) {
	big := func(n int64) []byte { return tuf("targets", 1, int(n)) }
	for _, tc := range []struct {
		name   string
		mutate func(*Metadata)
		want   error
		msg    string // substring of the error message
	}{
		{"root chain too long", func(m *Metadata) { *m = *testMeta(MaxRootChain+1, 1) }, ErrLimit, "(MaxRootChain)"},
		{"root file too big", func(m *Metadata) { m.RootChain = [][]byte{tuf("root", 2, int(MaxMetadataSize)+1)} }, ErrLimit, "root chain entry 0 is 8388609 bytes, limit is 8388608 (MaxMetadataSize)"},
		{"targets too big", func(m *Metadata) { m.Targets = big(MaxMetadataSize + 1) }, ErrLimit, "(MaxMetadataSize)"},
		{"header too big", func(m *Metadata) {
			for i := range 5 {
				m.Delegated = append(m.Delegated, Role{Name: fmt.Sprint("r", i), Data: big(MaxMetadataSize - 1000)})
			}
		}, ErrLimit, "(MaxHeaderSize)"},
		{"too many delegations", func(m *Metadata) { *m = *testMeta(0, 1, "a", "b", "c", "d", "e", "f", "g", "h", "i") }, ErrLimit, "(MaxDelegations)"},
		{"role name too long", func(m *Metadata) { *m = *testMeta(0, 1, strings.Repeat("a", MaxRoleNameLen+1)) }, ErrLimit, "(MaxRoleNameLen)"},
		{"target path too long", func(m *Metadata) { m.TargetPath = strings.Repeat("a", MaxTargetPathLen+1) }, ErrLimit, "(MaxTargetPathLen)"},
		{"payload too big", func(m *Metadata) { m.PayloadLength = MaxPayloadSize + 1 }, ErrLimit, "the payload is 68719476737 bytes, more than the 68719476736 bytes a bundle may carry"},
		{"payload far too big", func(m *Metadata) { m.PayloadLength = 70 << 30 }, ErrLimit, "bundle: the payload is 70.0 GiB, more than the 64.0 GiB a bundle may carry"},
		{"negative payload length", func(m *Metadata) { m.PayloadLength = -1 }, ErrMalformed, "negative"},
		{"empty timestamp", func(m *Metadata) { m.Timestamp = nil }, ErrMalformed, "timestamp is empty"},
		{"empty root entry", func(m *Metadata) { m.RootChain = [][]byte{{}} }, ErrMalformed, "root chain entry 0 is empty"},
		{"root versions skip", func(m *Metadata) { m.RootChain[1] = tuf("root", 4, 0) }, ErrMalformed, "want 3"},
		{"root versions repeat", func(m *Metadata) { m.RootChain[1] = tuf("root", 2, 0) }, ErrMalformed, "want 3"},
		{"root versions reversed", func(m *Metadata) { m.RootChain[0], m.RootChain[1] = m.RootChain[1], m.RootChain[0] }, ErrMalformed, "want 4"},
		{"root version zero", func(m *Metadata) { m.RootChain = [][]byte{tuf("root", 0, 0)} }, ErrMalformed, "at least 1"},
		{"snapshot in timestamp position", func(m *Metadata) { m.Timestamp = tuf("snapshot", 7, 0) }, ErrMalformed, `_type "snapshot", want "timestamp"`},
		{"root in root chain is targets", func(m *Metadata) { m.RootChain[0] = tuf("targets", 2, 0) }, ErrMalformed, `want "root"`},
		{"delegated role is root", func(m *Metadata) { m.Delegated[0].Data = tuf("root", 2, 0) }, ErrMalformed, `want "targets"`},
		{"metadata not JSON", func(m *Metadata) { m.Snapshot = []byte("\x00garbage") }, ErrMalformed, "snapshot is not TUF metadata"},
		{"metadata without signed", func(m *Metadata) { m.Snapshot = []byte(`{"signatures":[]}`) }, ErrMalformed, `no "signed"`},
		{"duplicate role", func(m *Metadata) { m.Delegated = append(m.Delegated, m.Delegated[0]) }, ErrMalformed, "duplicate"},
		{"role name empty", func(m *Metadata) { m.Delegated[0].Name = "" }, ErrMalformed, "empty"},
		{"role name dot dot", func(m *Metadata) { m.Delegated[0].Name = "acme..x" }, ErrMalformed, `".."`},
		{"role name starts with dot", func(m *Metadata) { m.Delegated[0].Name = ".acme" }, ErrMalformed, "byte 0"},
		{"role name slash", func(m *Metadata) { m.Delegated[0].Name = "acme/x" }, ErrMalformed, "byte 4"},
		{"role name NUL", func(m *Metadata) { m.Delegated[0].Name = "acme\x00" }, ErrMalformed, "byte 4"},
		{"role name top-level", func(m *Metadata) { m.Delegated[0].Name = "targets" }, ErrMalformed, "top-level"},
		{"role data empty", func(m *Metadata) { m.Delegated[0].Data = nil }, ErrMalformed, "empty"},
		{"target path empty", func(m *Metadata) { m.TargetPath = "" }, ErrMalformed, "empty"},
		{"target path absolute", func(m *Metadata) { m.TargetPath = "/etc/passwd" }, ErrMalformed, "segment"},
		{"target path traversal", func(m *Metadata) { m.TargetPath = "acme/../../etc/passwd" }, ErrMalformed, "segment"},
		{"target path dot", func(m *Metadata) { m.TargetPath = "acme/./fw.img" }, ErrMalformed, "segment"},
		{"target path double slash", func(m *Metadata) { m.TargetPath = "acme//fw.img" }, ErrMalformed, "segment"},
		{"target path trailing slash", func(m *Metadata) { m.TargetPath = "acme/" }, ErrMalformed, "segment"},
		{"target path backslash", func(m *Metadata) { m.TargetPath = `acme\fw.img` }, ErrMalformed, "contains"},
		{"target path newline", func(m *Metadata) { m.TargetPath = "acme/fw.img\nINFO: ok" }, ErrMalformed, "contains"},
		{"target path C1 control", func(m *Metadata) { m.TargetPath = "acme/fw\u009b.img" }, ErrMalformed, "contains"},
		{"target path bad UTF-8", func(m *Metadata) { m.TargetPath = "acme/\xff.img" }, ErrMalformed, "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMeta(2, 1, "acme.router-x1")
			tc.mutate(m)
			err := Write(io.Discard, m, bytes.NewReader([]byte{0})) // valid metadata has PayloadLength 1
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Write: got %v, want %v containing %q", err, tc.want, tc.msg)
			}
			// Header only: the reader must reject before wanting the payload.
			rwant := tc.want
			if m.PayloadLength < 0 {
				rwant = ErrLimit // encoded as a uint64 over MaxPayloadSize
			}
			_, err = NewReader(bytes.NewReader(encodeHeader(m)), Limits{})
			if !errors.Is(err, rwant) {
				t.Fatalf("NewReader: got %v, want %v", err, rwant)
			}
		})
	}
}

// TestLengthsAreCheckedBeforeReading feeds headers whose claimed lengths are
// over a limit and that end right after the length: the reader must report
// the limit, proving it checked before reading or allocating.
func TestLengthsAreCheckedBeforeReading(t *testing.T) {
	start := []byte(Magic + "\x00\x01")
	blob := func(n uint32) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
	ts := append(blob(10), `{"a":1234}`...)
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"root count", append(bytes.Clone(start), MaxRootChain+1), "(MaxRootChain)"},
		{"root length", append(append(bytes.Clone(start), 1), blob(uint32(MaxMetadataSize)+1)...), "(MaxMetadataSize)"},
		{"max uint32 length", append(append(bytes.Clone(start), 0), blob(0xffffffff)...), "(MaxMetadataSize)"},
		{"delegation count", bytes.Join([][]byte{start, {0}, ts, ts, ts, {MaxDelegations + 1}}, nil), "(MaxDelegations)"},
		{"role name length", bytes.Join([][]byte{start, {0}, ts, ts, ts, {1, MaxRoleNameLen + 1}}, nil), "(MaxRoleNameLen)"},
		{"target path length", bytes.Join([][]byte{start, {0}, ts, ts, ts, {0, 0x02, 0x01}}, nil), "(MaxTargetPathLen)"},
		{"payload length", bytes.Join([][]byte{start, {0}, ts, ts, ts, {0, 0, 1, 'a', 0, 0, 0, 0x10, 0, 0, 0, 1}}, nil), "a bundle may carry"},
		{"payload length 2^64-1", bytes.Join([][]byte{start, {0}, ts, ts, ts, {0, 0, 1, 'a'}, bytes.Repeat([]byte{0xff}, 8)}, nil), "the payload is over 8.0 EiB, more than the 64.0 GiB a bundle may carry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.b), Limits{})
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrLimit naming %s", err, tc.msg)
			}
		})
	}
}

// TestLyingLengthAllocatesLittle claims a maximal root file on a tiny input:
// memory must follow the bytes present, not the claimed length.
func TestLyingLengthAllocatesLittle(t *testing.T) {
	n := uint32(MaxMetadataSize)
	b := append([]byte(Magic+"\x00\x01\x01"), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	b = append(b, make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(b), Limits{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("a 100-byte root file claiming %d bytes allocated %d bytes", n, alloc)
	}
}

func TestReaderLimitsLowerTheFormatLimits(t *testing.T) {
	m := testMeta(3, 100, "acme", "acme.router-x1")
	b := encode(t, m, testPayload(100))
	for _, tc := range []struct {
		name string
		lim  Limits
		msg  string
	}{
		{"payload over a lowered limit", Limits{MaxPayloadSize: 99}, "the payload is 100 bytes, more than the 99 bytes a bundle may carry"},
		{"metadata file", Limits{MaxMetadataSize: 100}, "(Limits.MaxMetadataSize)"},
		{"header", Limits{MaxHeaderSize: headerSize(m) - 1}, "(Limits.MaxHeaderSize)"},
		{"root chain", Limits{MaxRootChain: 2}, "(Limits.MaxRootChain)"},
		{"delegations", Limits{MaxDelegations: 1}, "(Limits.MaxDelegations)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readAll(b, tc.lim)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrLimit naming %s", err, tc.msg)
			}
		})
	}
	exact := Limits{MaxPayloadSize: 100, MaxHeaderSize: headerSize(m), MaxRootChain: 3, MaxDelegations: 2}
	if _, _, err := readAll(b, exact); err != nil {
		t.Fatalf("limits equal to the bundle's sizes rejected it: %v", err)
	}
	for _, bad := range []Limits{{MaxPayloadSize: -1}, {MaxPayloadSize: MaxPayloadSize + 1}, {MaxRootChain: MaxRootChain + 1}, {MaxHeaderSize: -5}} {
		if _, err := NewReader(bytes.NewReader(b), bad); err == nil || !strings.Contains(err.Error(), "invalid Limits") {
			t.Errorf("NewReader accepted invalid %+v: %v", bad, err)
		}
	}
}

func TestWritePayloadLengthMismatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload int
	}{{"short payload", 99}, {"long payload", 101}, {"empty payload", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, testMeta(0, 100), bytes.NewReader(testPayload(tc.payload)))
			if !errors.Is(err, ErrPayloadLength) {
				t.Fatalf("got %v, want ErrPayloadLength", err)
			}
			if _, err := Inspect(&buf); err == nil {
				t.Fatal("the partial output of a failed Write parses as a bundle")
			}
		})
	}
}

// TestSkipPayloadDigest: with the digest skipped the payload still streams,
// and truncation, a bad trailer magic or length and trailing junk are still
// refused; only a flipped payload byte (which the caller's TUF hash check
// catches) passes the framing.
func TestSkipPayloadDigest(t *testing.T) {
	payload := testPayload(1000)
	good := encode(t, testMeta(1, int64(len(payload))), payload)
	read := func(b []byte) error {
		r, err := NewReader(bytes.NewReader(b), Limits{})
		if err != nil {
			return err
		}
		r.SkipPayloadDigest()
		_, err = io.Copy(io.Discard, r.Payload())
		return err
	}
	if err := read(good); err != nil {
		t.Fatal(err)
	}
	payloadStart := len(good) - TrailerSize - len(payload)
	flipped := append([]byte{}, good...)
	flipped[payloadStart+10] ^= 1
	if err := read(flipped); err != nil {
		t.Fatalf("flipped payload byte: %v (the digest is skipped; TUF catches it)", err)
	}
	if err := read(good[:len(good)-1]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated: %v", err)
	}
	if err := read(append(append([]byte{}, good...), 0)); !errors.Is(err, ErrTrailer) {
		t.Fatalf("junk after trailer: %v", err)
	}
	badLen := append([]byte{}, good...)
	badLen[len(good)-TrailerSize+len(TrailerMagic)+7] ^= 1
	if err := read(badLen); !errors.Is(err, ErrTrailer) {
		t.Fatalf("bad trailer length: %v", err)
	}
}
