package agent

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressOutput(t *testing.T) {
	tests := []struct {
		mode     string
		terminal bool
		want     []string
	}{
		{ProgressAuto, false, []string{"downloading fw (1.0 MiB)", "512.0 KiB of 1.0 MiB (50%)", "downloaded fw: 1.0 MiB"}},
		{ProgressAuto, true, []string{"\r[===============               ] 512.0 KiB of 1.0 MiB (50%)", "\r[==============================] 1.0 MiB of 1.0 MiB (100%)"}},
		{ProgressBar, false, []string{"\r[", "(100%)"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			var b bytes.Buffer
			p := NewProgress(tt.mode, &b, tt.terminal).(*progressPrinter)
			now := time.Unix(0, 0)
			p.now = func() time.Time { return now }
			p.Start("fw", 1<<20)
			now = now.Add(time.Minute)
			p.Update(512 << 10)
			p.Update(1 << 20)
			p.Done()
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output %q does not contain %q", b.String(), w)
				}
			}
		})
	}
	if NewProgress(ProgressNone, &bytes.Buffer{}, true) != nil {
		t.Error("progress none prints")
	}
}
