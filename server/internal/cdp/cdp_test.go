package cdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// serverFrame encodes an unmasked frame as a server sends it.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func TestReadFrameRejectsMalformedFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"masked server frame", []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}},
		{"reserved bits", []byte{0xc1, 0x01, 'x'}},
		{"unknown opcode", []byte{0x83, 0x00}},
		{"non-minimal 16-bit length", []byte{0x81, 126, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'}},
		{"non-minimal 64-bit length", append([]byte{0x81, 127}, make([]byte, 8)...)},
		{"oversized frame", append([]byte{0x81, 127}, binary.BigEndian.AppendUint64(nil, MaxFrameSize+1)...)},
		{"length beyond int64", append([]byte{0x81, 127}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)},
		{"fragmented ping", []byte{0x09, 0x00}},
		{"long close", append([]byte{0x88, 126, 0x00, 126}, make([]byte, 126)...)},
		{"truncated payload", []byte{0x81, 0x05, 'h', 'i'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readFrame(bytes.NewReader(tc.in))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		})
	}
}

func TestMessageReaderAssemblesFragmentsAndAnswersPings(t *testing.T) {
	var in []byte
	in = append(in, serverFrame(false, opText, []byte(`{"id":`))...)
	in = append(in, serverFrame(true, opPing, []byte("p"))...)
	in = append(in, serverFrame(false, opContinuation, []byte(`1,`))...)
	in = append(in, serverFrame(true, opContinuation, []byte(`"x":2}`))...)
	big := bytes.Repeat([]byte("a"), 70000)
	in = append(in, serverFrame(true, opText, big)...)
	in = append(in, serverFrame(true, opClose, []byte{0x03, 0xe8})...)
	var pongs [][]byte
	m := messageReader{r: bytes.NewReader(in), control: func(op byte, p []byte) error {
		if op != opPong {
			t.Fatalf("control answer opcode %#x", op)
		}
		pongs = append(pongs, p)
		return nil
	}}
	got, err := m.next()
	if err != nil || string(got) != `{"id":1,"x":2}` {
		t.Fatalf("first message %q, %v", got, err)
	}
	if len(pongs) != 1 || string(pongs[0]) != "p" {
		t.Fatalf("pongs %q", pongs)
	}
	if got, err = m.next(); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("64 KiB+ message: %d bytes, %v", len(got), err)
	}
	if _, err = m.next(); err != io.EOF {
		t.Fatalf("after close: %v, want io.EOF", err)
	}
}

func TestMessageReaderRejectsBrokenFragmentation(t *testing.T) {
	for name, in := range map[string][]byte{
		"continuation first":       serverFrame(true, opContinuation, []byte("x")),
		"text inside a fragmented": append(serverFrame(false, opText, []byte("a")), serverFrame(true, opText, []byte("b"))...),
	} {
		t.Run(name, func(t *testing.T) {
			m := messageReader{r: bytes.NewReader(in)}
			if _, err := m.next(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err %v, want ErrProtocol", err)
			}
		})
	}
}

// TestAppendFrameMasksAndEncodesLengths decodes client frames by hand
// (RFC 6455 section 5.3).
func TestAppendFrameMasksAndEncodesLengths(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		payload := bytes.Repeat([]byte{'z'}, n)
		f := appendFrame(nil, opText, payload)
		if f[0] != 0x81 || f[1]&0x80 == 0 {
			t.Fatalf("n=%d: header %#x %#x: want FIN text, masked", n, f[0], f[1])
		}
		off, ln := 2, int(f[1]&0x7f)
		switch ln {
		case 126:
			ln, off = int(binary.BigEndian.Uint16(f[2:])), 4
		case 127:
			ln, off = int(binary.BigEndian.Uint64(f[2:])), 10
		}
		if ln != n {
			t.Fatalf("length %d, want %d", ln, n)
		}
		mask := f[off : off+4]
		body := f[off+4:]
		for i := range body {
			body[i] ^= mask[i%4]
		}
		if !bytes.Equal(body, payload) {
			t.Fatalf("n=%d: payload does not unmask", n)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(serverFrame(true, opText, []byte(`{"id":1,"result":{}}`)))
	f.Add(serverFrame(false, opText, []byte("a")))
	f.Add(serverFrame(true, opPing, nil))
	f.Add(serverFrame(true, opBinary, bytes.Repeat([]byte{1}, 300)))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := readFrame(bytes.NewReader(in))
		if err != nil {
			return
		}
		if len(fr.payload) > len(in) || (fr.opcode >= opClose && (len(fr.payload) > maxControlPayload || !fr.fin)) {
			t.Fatalf("accepted frame %+v from %d bytes", fr, len(in))
		}
		m := messageReader{r: bytes.NewReader(in)}
		m.next()
	})
}

// TestLaunchEvaluateAndScreenshot drives a real headless Chromium.
func TestLaunchEvaluateAndScreenshot(t *testing.T) {
	if _, err := Find(); err != nil {
		if os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b, err := Launch(ctx, Options{UserDataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := p.Eval(ctx, "6*7", &n); err != nil || n != 42 {
		t.Fatalf("6*7 = %d, %v", n, err)
	}
	if err := p.Eval(ctx, "(() => { throw new Error('boom') })()", nil); err == nil {
		t.Fatal("a thrown exception is not an error")
	}
	if err := p.Navigate(ctx, "data:text/html,<h1>hello</h1>"); err != nil {
		t.Fatal(err)
	}
	if txt, err := p.Text(ctx); err != nil || txt != "hello" {
		t.Fatalf("text %q, %v", txt, err)
	}
	png, err := p.Screenshot(ctx)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
}
