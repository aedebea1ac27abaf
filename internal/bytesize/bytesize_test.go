package bytesize

import "testing"

func TestPair(t *testing.T) {
	for _, tc := range []struct {
		a, b         int64
		wantA, wantB string
	}{
		{80 << 20, 64 << 20, "80.0 MiB", "64.0 MiB"},
		{70 << 30, 64 << 30, "70.0 GiB", "64.0 GiB"},
		{64<<20 + 1, 64 << 20, "67108865 bytes", "67108864 bytes"},
		{1023, 1 << 10, "1023 bytes", "1.0 KiB"},
		{0, 1<<63 - 1, "0 bytes", "8.0 EiB"},
		{1536, 1 << 40, "1.5 KiB", "1.0 TiB"},
	} {
		if a, b := Pair(tc.a, tc.b); a != tc.wantA || b != tc.wantB {
			t.Errorf("Pair(%d, %d) = %q, %q; want %q, %q", tc.a, tc.b, a, b, tc.wantA, tc.wantB)
		}
	}
}
