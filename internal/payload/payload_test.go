package payload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func expectFor(t *testing.T, raw []byte, compress bool) (Expect, []byte) {
	t.Helper()
	transport := raw
	comp := ""
	if compress {
		var b bytes.Buffer
		enc, err := zstd.NewWriter(&b, zstd.WithWindowSize(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		enc.Write(raw)
		enc.Close()
		transport = b.Bytes()
		comp = "zstd"
	}
	s256 := sha256.Sum256(transport)
	s512 := sha512.Sum512(transport)
	ih := sha256.Sum256(raw)
	return Expect{
		Length:          int64(len(transport)),
		Hashes:          map[string][]byte{"sha256": s256[:], "sha512": s512[:]},
		Compression:     comp,
		InstalledLength: int64(len(raw)),
		InstalledSHA256: ih[:],
	}, transport
}

func TestCopy(t *testing.T) {
	raw := bytes.Repeat([]byte("firmware-image-"), 100000)
	for _, compress := range []bool{false, true} {
		name := map[bool]string{false: "raw", true: "zstd"}[compress]
		t.Run(name, func(t *testing.T) {
			e, transport := expectFor(t, raw, compress)
			var dst bytes.Buffer
			if _, err := Copy(&dst, bytes.NewReader(transport), e); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst.Bytes(), raw) {
				t.Fatal("installed bytes differ")
			}

			attacks := []struct {
				name string
				src  []byte
				want error
			}{
				{"TamperedPayload", flip(transport, len(transport)/2), ErrHash},
				{"TruncatedPayload", transport[:len(transport)-1], ErrLength},
				{"EndlessData", append(append([]byte{}, transport...), make([]byte, 1<<20)...), ErrLength},
			}
			for _, a := range attacks {
				t.Run(a.name, func(t *testing.T) {
					_, err := Copy(io.Discard, bytes.NewReader(a.src), e)
					if !errors.Is(err, a.want) {
						t.Fatalf("err = %v, want %v", err, a.want)
					}
				})
			}
			t.Run("WrongInstalledDigest", func(t *testing.T) {
				e2 := e
				e2.InstalledSHA256 = bytes.Repeat([]byte{1}, 32)
				if _, err := Copy(io.Discard, bytes.NewReader(transport), e2); !errors.Is(err, ErrInstalledHash) {
					t.Fatalf("err = %v, want ErrInstalledHash", err)
				}
			})
		})
	}
}

func TestDecompressionBombStopsAtInstalledLength(t *testing.T) {
	raw := make([]byte, 64<<20) // compresses to almost nothing
	e, transport := expectFor(t, raw, true)
	e.InstalledLength = 1 << 20 // metadata says 1 MiB, stream inflates to 64 MiB
	_, err := Copy(io.Discard, bytes.NewReader(transport), e)
	if err == nil {
		t.Fatal("decompression bomb accepted")
	}
}

func TestNoSupportedHash(t *testing.T) {
	e := Expect{Length: 1, Hashes: map[string][]byte{"md5": {1}}, InstalledLength: 1, InstalledSHA256: make([]byte, 32)}
	if _, err := Copy(io.Discard, bytes.NewReader([]byte{0}), e); !errors.Is(err, ErrNoHash) {
		t.Fatalf("err = %v", err)
	}
}

// TestConstantMemory streams 256 MiB and checks the heap does not grow with it.
func TestConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const size = 256 << 20
	h := sha256.New()
	io.Copy(h, io.LimitReader(zeroReader{}, size))
	sum := h.Sum(nil)
	e := Expect{Length: size, Hashes: map[string][]byte{"sha256": sum}, InstalledLength: size, InstalledSHA256: sum}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := Copy(io.Discard, io.LimitReader(zeroReader{}, size), e); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("allocated %d bytes to stream %d bytes", grew, size)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x40
	return c
}

func TestHashInstalled(t *testing.T) {
	data := []byte("slot contents")
	sum := sha256.Sum256(data)
	if err := HashInstalled(bytes.NewReader(data), int64(len(data)), sum[:]); err != nil {
		t.Fatal(err)
	}
	if err := HashInstalled(bytes.NewReader(flip(data, 3)), int64(len(data)), sum[:]); !errors.Is(err, ErrInstalledHash) {
		t.Fatalf("corrupted slot: err = %v", err)
	}
	if err := HashInstalled(bytes.NewReader(data[:5]), int64(len(data)), sum[:]); !errors.Is(err, ErrInstalledLength) {
		t.Fatalf("short slot: err = %v", err)
	}
}

// TestSwappedPayloadIsNotADecompressionFailure: unverified bytes that the
// decoder chokes on are judged by the signed transport digest first, so a
// swapped or endless payload is reported as not matching the signed target,
// never as a "decompression failure" of a trusted release.
func TestSwappedPayloadIsNotADecompressionFailure(t *testing.T) {
	raw := bytes.Repeat([]byte("firmware-image-"), 100000)
	e, transport := expectFor(t, raw, true)
	garbage := func(n int) []byte { return bytes.Repeat([]byte{0x5a, 0xa5, 0x11}, n/3+1)[:n] }
	for _, a := range []struct {
		name string
		src  []byte
		want error
	}{
		{"SameLength", garbage(len(transport)), ErrHash},
		{"Shorter", garbage(len(transport) / 2), ErrLength},
		{"Endless", garbage(len(transport) + 1<<20), ErrLength},
		{"ValidZstdOfOtherBytes", func() []byte { _, tr := expectFor(t, bytes.Repeat([]byte("evil"), 10), true); return tr }(), ErrLength},
	} {
		t.Run(a.name, func(t *testing.T) {
			_, err := Copy(io.Discard, bytes.NewReader(a.src), e)
			if !errors.Is(err, a.want) || errors.Is(err, ErrCompression) {
				t.Fatalf("err = %v, want %v and not %v", err, a.want, ErrCompression)
			}
			if !strings.Contains(err.Error(), "does not match the signed target") {
				t.Fatalf("err = %v, want it to say the payload does not match the signed target", err)
			}
		})
	}
	// Only a payload that matches its signed digest and still does not
	// decompress is a broken release.
	broken := garbage(4096)
	eb := e
	s256, s512 := sha256.Sum256(broken), sha512.Sum512(broken)
	eb.Length, eb.Hashes = int64(len(broken)), map[string][]byte{"sha256": s256[:], "sha512": s512[:]}
	if _, err := Copy(io.Discard, bytes.NewReader(broken), eb); !errors.Is(err, ErrCompression) {
		t.Fatalf("signed but broken release: err = %v, want ErrCompression", err)
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// TestDownloadDeadlineIsNotADecompressionFailure: a source that fails
// mid-stream (the download deadline passed) is reported as that failure.
func TestDownloadDeadlineIsNotADecompressionFailure(t *testing.T) {
	raw := bytes.Repeat([]byte("firmware-image-"), 100000)
	for _, compress := range []bool{false, true} {
		e, transport := expectFor(t, raw, compress)
		src := &failingReader{data: transport[:len(transport)/2], err: fmt.Errorf("download deadline passed: %w", context.DeadlineExceeded)}
		_, err := Copy(io.Discard, src, e)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrCompression) {
			t.Fatalf("compress=%v: err = %v, want the deadline", compress, err)
		}
	}
}

// TestUnknownHashBesideAGoodOne: every listed hash must be verified.
func TestUnknownHashBesideAGoodOne(t *testing.T) {
	raw := []byte("image")
	e, transport := expectFor(t, raw, false)
	e.Hashes["md5"] = make([]byte, 16)
	if _, err := Copy(io.Discard, bytes.NewReader(transport), e); !errors.Is(err, ErrNoHash) {
		t.Fatalf("err = %v, want ErrNoHash", err)
	}
}
