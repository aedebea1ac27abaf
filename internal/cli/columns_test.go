package cli

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"
)

// TestColumnsLikeTabwriter: Columns prints what text/tabwriter printed for
// the device's status and verify tables.
func TestColumnsLikeTabwriter(t *testing.T) {
	for name, rows := range map[string][][]string{
		"key value":  {{"device:", "x1 (hw rev 3), product acme/router-x1, channel stable"}, {"anti-rollback counter:", "2"}, {"boot control:", "sim: good A, trial none, next boot A"}},
		"table":      {{"SLOT", "ROLE", "STATUS", "VERSION", "SECURITY", "NOTE"}, {"A", "active", "committed", "1.0.0", "1", ""}, {"B", "inactive", "empty", "", "", "never written"}},
		"runes":      {{"größe", "1"}, {"ä", "ü"}},
		"empty":      {},
		"one column": {{"a"}, {"bcd"}},
	} {
		var want bytes.Buffer
		tw := tabwriter.NewWriter(&want, 0, 4, 2, ' ', 0)
		for _, r := range rows {
			tw.Write([]byte(strings.Join(r, "\t") + "\n"))
		}
		tw.Flush()
		var got bytes.Buffer
		if err := Columns(&got, rows); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%s:\ngot\n%q\nwant (tabwriter)\n%q", name, got.String(), want.String())
		}
	}
}
