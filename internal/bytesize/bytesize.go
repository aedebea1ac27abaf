// Package bytesize prints byte counts in a user's terms, for messages that
// compare a size with a limit ("the image is 80.0 MiB installed but the slot
// holds 64.0 MiB").
package bytesize

import "fmt"

// Pair prints two sizes that are compared, a and b, in binary units with one
// decimal ("64.0 GiB"), or in bytes below 1 KiB or when the rounding would
// make them look equal (one byte over a limit). Sizes must not be negative.
// (One function, not two: the device binary pays for each function.)
func Pair(a, b int64) (string, string) {
	var s [2]string
	for k, n := range [2]int64{a, b} {
		i, d := 0, int64(1)
		for i < 6 && n >= d<<10 {
			i, d = i+1, d<<10
		}
		if i == 0 {
			s[k] = fmt.Sprintf("%d bytes", n)
		} else {
			s[k] = fmt.Sprintf("%.1f %ciB", float64(n)/float64(d), " KMGTPE"[i])
		}
	}
	if s[0] == s[1] {
		return fmt.Sprintf("%d bytes", a), fmt.Sprintf("%d bytes", b)
	}
	return s[0], s[1]
}
