package agent

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Progress output defaults.
const (
	// ProgressLogInterval is the time between two progress log lines.
	ProgressLogInterval = 10 * time.Second
	// ProgressBarInterval is the time between two redraws of the bar.
	ProgressBarInterval = 200 * time.Millisecond
	// progressBarWidth is the number of cells of the bar.
	progressBarWidth = 30
)

// Progress is told about a target download: Start once (total is the
// signed length, 0 if unknown), Update with the bytes received so far, Done
// at the end of the stream.
type Progress interface {
	Start(name string, total int64)
	Update(received int64)
	Done()
}

// NewProgress returns the Progress for mode (ProgressBar, ProgressLog,
// ProgressNone) writing to w; ProgressAuto picks the bar when terminal is
// true and log lines otherwise. ProgressNone returns nil.
func NewProgress(mode string, w io.Writer, terminal bool) Progress {
	return NewProgressLog(mode, w, nil, terminal)
}

// NewProgressLog is NewProgress whose log lines are records of log (msg
// "downloading", "downloaded"; target, received, total bytes) when log is
// not nil: the agent's JSON log stays one object per line.
func NewProgressLog(mode string, w io.Writer, log *slog.Logger, terminal bool) Progress {
	if mode == ProgressAuto {
		mode = ProgressLog
		if terminal {
			mode = ProgressBar
		}
	}
	switch mode {
	case ProgressBar:
		return &progressPrinter{w: w, bar: true, every: ProgressBarInterval, now: time.Now}
	case ProgressLog:
		return &progressPrinter{w: w, log: log, every: ProgressLogInterval, now: time.Now}
	}
	return nil
}

type progressPrinter struct {
	w     io.Writer
	log   *slog.Logger // log mode: records instead of lines on w
	bar   bool
	every time.Duration
	now   func() time.Time

	mu       sync.Mutex
	name     string
	total    int64
	received int64
	start    time.Time
	last     time.Time
	active   bool
}

func (p *progressPrinter) Start(name string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.received, p.active = name, total, 0, true
	p.start = p.now()
	p.last = p.start
	if p.log != nil {
		p.log.Info("downloading", "target", name, "total", total)
	} else if !p.bar {
		fmt.Fprintf(p.w, "airlock: downloading %s (%s)\n", name, sizeOrUnknown(total))
	} else {
		p.draw()
	}
}

func (p *progressPrinter) Update(received int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active {
		return
	}
	p.received = received
	if now := p.now(); now.Sub(p.last) >= p.every {
		p.last = now
		switch {
		case p.log != nil:
			p.log.Info("downloading", "target", p.name, "received", received, "total", p.total)
		case p.bar:
			p.draw()
		default:
			fmt.Fprintf(p.w, "airlock: downloading %s: %s\n", p.name, p.status())
		}
	}
}

func (p *progressPrinter) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.active {
		return
	}
	p.active = false
	if p.log != nil {
		p.log.Info("downloaded", "target", p.name, "received", p.received, "seconds", p.now().Sub(p.start).Seconds())
		return
	}
	if p.bar {
		p.draw()
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintf(p.w, "airlock: downloaded %s: %s in %v\n", p.name, humanBytes(p.received), p.now().Sub(p.start).Round(time.Millisecond))
}

func (p *progressPrinter) status() string {
	s := humanBytes(p.received)
	if p.total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", humanBytes(p.total), p.received*100/p.total)
	}
	if el := p.now().Sub(p.start).Seconds(); el > 0 {
		s += fmt.Sprintf(", %s/s", humanBytes(int64(float64(p.received)/el)))
	}
	return s
}

func (p *progressPrinter) draw() {
	filled := 0
	if p.total > 0 {
		filled = int(min(p.received, p.total) * progressBarWidth / p.total)
	}
	fmt.Fprintf(p.w, "\r[%s%s] %s ", strings.Repeat("=", filled), strings.Repeat(" ", progressBarWidth-filled), p.status())
}

func sizeOrUnknown(n int64) string {
	if n <= 0 {
		return "size unknown"
	}
	return humanBytes(n)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
