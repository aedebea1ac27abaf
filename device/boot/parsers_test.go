package boot

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// grubBlockOf pads body (which follows the signature) to GrubEnvSize with '#'.
func grubBlockOf(body string) []byte {
	b := []byte(grubHeader + body)
	for len(b) < GrubEnvSize {
		b = append(b, '#')
	}
	return b
}

func TestParseGrubEnvAcceptsWhatGrubWrites(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		warning bool
		want    []envVar
	}{
		{"empty grub 2.02 block", grubBlockOf(""), false, nil},
		{"empty grub 2.06 block", grubBlockOf(grubWarning), true, nil},
		{"variables", grubBlockOf(grubWarning + "a=1\nb=\nc=x=y\n"), true, []envVar{{"a", "1"}, {"b", ""}, {"c", "x=y"}}},
		{"escaped backslash and newline", grubBlockOf("v=a\\\\b\\\nc\n"), false, []envVar{{"v", "a\\b\nc"}}},
		{"value with hash", grubBlockOf("v=#x\n"), false, []envVar{{"v", "#x"}}},
		{"block exactly full", []byte(grubHeader + "v=" + strings.Repeat("x", GrubEnvSize-len(grubHeader)-3) + "\n"), false,
			[]envVar{{"v", strings.Repeat("x", GrubEnvSize-len(grubHeader)-3)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := parseGrubEnv(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.env.vars, cmp.AllowUnexported(envVar{})); diff != "" {
				t.Errorf("vars (-want +got):\n%s", diff)
			}
			if b.warning != tt.warning {
				t.Errorf("warning = %v, want %v", b.warning, tt.warning)
			}
			out, err := marshalGrubEnv(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tt.data) {
				t.Errorf("re-encoding differs:\n got %q\nwant %q", out, tt.data)
			}
		})
	}
}

func TestParseGrubEnvRejectsMalformedBlocks(t *testing.T) {
	valid := grubBlockOf("a=1\n")
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short by one", valid[:GrubEnvSize-1]},
		{"long by one", append(bytes.Clone(valid), '#')},
		{"no signature", grubBlockOf("")[1:]},
		{"wrong signature", append([]byte("# GRUB Environment Blocc\n"), valid[len(grubHeader):]...)},
		{"line without equals", grubBlockOf("abc\n")},
		{"empty name", grubBlockOf("=1\n")},
		{"name with space", grubBlockOf("a b=1\n")},
		{"name with backslash", grubBlockOf("a\\b=1\n")},
		{"name with newline", grubBlockOf("a\nb=1\n")},
		{"name too long", grubBlockOf(strings.Repeat("n", MaxNameLen+1) + "=1\n")},
		{"duplicate", grubBlockOf("a=1\na=2\n")},
		{"unknown escape", grubBlockOf("a=\\t\n")},
		{"value with NUL", grubBlockOf("a=\x00\n")},
		{"unterminated value fills block", []byte(grubHeader + "a=" + strings.Repeat("x", GrubEnvSize-len(grubHeader)-2))},
		{"trailing backslash", []byte(grubHeader + "a=" + strings.Repeat("x", GrubEnvSize-len(grubHeader)-3) + "\\")},
		{"comment line after variables", grubBlockOf("a=1\n# comment\n")},
		{"garbage in padding", func() []byte { b := bytes.Clone(valid); b[GrubEnvSize-1] = 'x'; return b }()},
		{"NUL padding", append([]byte(grubHeader+"a=1\n"), make([]byte, GrubEnvSize-len(grubHeader)-4)...)},
		{"warning line misspelled", grubBlockOf("# WARNING: edit me\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseGrubEnv(tt.data)
			var se *SyntaxError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &se) {
				t.Fatalf("parseGrubEnv = %v, want a SyntaxError wrapping ErrCorrupt", err)
			}
		})
	}
}

func TestMarshalGrubEnvFailsWhenFull(t *testing.T) {
	e := envOf("big", strings.Repeat("x", GrubEnvSize))
	if _, err := marshalGrubEnv(&grubBlock{env: e}); !errors.Is(err, ErrEnvFull) {
		t.Fatalf("marshalGrubEnv = %v, want ErrEnvFull", err)
	}
	// Escapes count: 500 backslashes need 1000 bytes.
	e = envOf("v", strings.Repeat("\\", 500))
	if _, err := marshalGrubEnv(&grubBlock{env: e}); !errors.Is(err, ErrEnvFull) {
		t.Fatalf("marshalGrubEnv with escapes = %v, want ErrEnvFull", err)
	}
}

func ubootData(entries string, size int) []byte {
	b := make([]byte, size)
	copy(b, entries)
	return b
}

func TestParseUBootDataRejectsMalformedData(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"no end marker", bytes.Repeat([]byte("a=1\x00"), 64)},
		{"unterminated entry", []byte("a=1\x00b=2")},
		{"entry without equals", ubootData("a=1\x00junk\x00\x00", 64)},
		{"empty name", ubootData("=1\x00\x00", 64)},
		{"name with space", ubootData("a b=1\x00\x00", 64)},
		{"name with control byte", ubootData("a\x01=1\x00\x00", 64)},
		{"name with high byte", ubootData("\xff=1\x00\x00", 64)},
		{"name too long", ubootData(strings.Repeat("n", MaxNameLen+1)+"=1\x00\x00", 2*MaxNameLen)},
		{"value too long", ubootData("v="+strings.Repeat("x", MaxValueLen+1)+"\x00\x00", MaxValueLen+16)},
		{"duplicate", ubootData("a=1\x00a=1\x00\x00", 64)},
		{"too many variables", func() []byte {
			var b strings.Builder
			for i := 0; i <= MaxVariables; i++ {
				b.WriteString("v" + strconv.Itoa(i) + "=\x00")
			}
			return ubootData(b.String()+"\x00", b.Len()+8)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseUBootData(tt.data)
			var se *SyntaxError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &se) {
				t.Fatalf("parseUBootData = %v, want a SyntaxError wrapping ErrCorrupt", err)
			}
		})
	}
}

func TestParseUBootDataAcceptsPaddingStyles(t *testing.T) {
	want := []envVar{{"a", "1"}, {"b", "x=y\nz"}}
	// Zeros (U-Boot, Airlock), 0xff (mkenvimage) and leftover bytes
	// (libubootenv 0.3.2 does not clear its buffer) after the end marker.
	for _, pad := range []byte{0x00, 0xff, 0x91} {
		data := bytes.Repeat([]byte{pad}, 64)
		copy(data, "a=1\x00b=x=y\nz\x00\x00")
		e, err := parseUBootData(data)
		if err != nil {
			t.Fatalf("padding %#x: %v", pad, err)
		}
		if diff := cmp.Diff(want, e.vars, cmp.AllowUnexported(envVar{})); diff != "" {
			t.Errorf("padding %#x (-want +got):\n%s", pad, diff)
		}
	}
	e, err := parseUBootData(make([]byte, 16))
	if err != nil || len(e.vars) != 0 {
		t.Fatalf("all-zero data area = %v, %v; want empty environment", e, err)
	}
}

func TestMarshalUBootDataFailsWhenFull(t *testing.T) {
	dst := make([]byte, 16)
	if err := marshalUBootData(dst, envOf("a", strings.Repeat("x", 13))); !errors.Is(err, ErrEnvFull) {
		t.Fatalf("marshalUBootData = %v, want ErrEnvFull", err)
	}
	// Exactly full: "a=" + 12 bytes + NUL + end NUL = 16.
	if err := marshalUBootData(dst, envOf("a", strings.Repeat("x", 12))); err != nil {
		t.Fatalf("marshalUBootData of an exactly full env = %v", err)
	}
	if err := marshalUBootData(dst, envOf("a=b", "1")); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("marshalUBootData with '=' in name = %v, want ErrInvalidState", err)
	}
}

func TestParseSimRejectsEverythingButTheCanonicalEncoding(t *testing.T) {
	valid := string(marshalSim(State{Good: SlotA, Trial: SlotB, BootCount: 1, BootLimit: 2, Bad: []Slot{SlotB}}))
	if _, err := parseSim([]byte(valid)); err != nil {
		t.Fatalf("parseSim(valid) = %v", err)
	}
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"wrong version", strings.Replace(valid, "v1", "v2", 1)},
		{"missing final newline", strings.TrimSuffix(valid, "\n")},
		{"trailing data", valid + "\n"},
		{"keys reordered", strings.Replace(valid, "good=A\ntrial=B", "trial=B\ngood=A", 1)},
		{"duplicate key", strings.Replace(valid, "trial=B\n", "trial=B\ntrial=B\n", 1)},
		{"CRLF", strings.ReplaceAll(valid, "\n", "\r\n")},
		{"space around equals", strings.Replace(valid, "good=A", "good = A", 1)},
		{"leading zero", strings.Replace(valid, "bootcount=1", "bootcount=01", 1)},
		{"bootlimit zero", strings.Replace(valid, "bootlimit=2", "bootlimit=0", 1)},
		{"trial equals good", strings.Replace(valid, "trial=B", "trial=A", 1)},
		{"unsorted bad", strings.Replace(valid, "bad=B", "bad=B,A", 1)},
		{"too long", valid + strings.Repeat("x", MaxSimStateSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseSim([]byte(tt.data)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parseSim = %v, want ErrCorrupt", err)
			}
		})
	}
}
