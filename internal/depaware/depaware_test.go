package depaware

import (
	"strings"
	"testing"
)

func TestDiffNamesGainedAndLostPackagesAndTheRefreshCommand(t *testing.T) {
	if d := diff("x", []string{"a", "b"}, []string{"b", "a"}); d != "" {
		t.Errorf("same set in another order: %q, want no diff", d)
	}
	d := diff("airlock-device", []string{"a", "b"}, []string{"a", "c"})
	for _, want := range []string{"+ c\n", "- b\n", RefreshCommand, "cmd/airlock-device/depaware.txt"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
}
