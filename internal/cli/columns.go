package cli

import (
	"io"
	"strings"
	"unicode/utf8"
)

// Columns writes rows as left-aligned columns: every cell but a row's last
// is padded with spaces to its column's widest cell plus two (widths in
// runes), as text/tabwriter does with minwidth 0, padding 2 and
// tab-terminated cells, without carrying its code into the device binary.
func Columns(w io.Writer, rows [][]string) error {
	var width []int
	for _, r := range rows {
		for i, c := range r[:max(len(r)-1, 0)] {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
