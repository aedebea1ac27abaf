package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestProgressLog(t *testing.T) {
	var b bytes.Buffer
	p := NewProgressLog(slog.New(slog.NewJSONHandler(&b, nil))).(*progressLog)
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	p.Start("fw", 1<<20)
	now = now.Add(time.Second)
	p.Update(256 << 10) // within the interval: no record
	now = now.Add(ProgressLogInterval)
	p.Update(512 << 10)
	p.Update(1 << 20)
	p.Done()
	p.Done() // once
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var rec struct {
			Msg      string `json:"msg"`
			Received int64  `json:"received"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, fmt.Sprintf("%s %d", rec.Msg, rec.Received))
	}
	want := []string{"downloading 0", "downloading 524288", "downloaded 1048576"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("records %q, want %q", got, want)
	}
}
