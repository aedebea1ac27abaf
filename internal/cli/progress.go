package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// ProgressInterval is the shortest time between two redraws of a progress
// line: at most four a second.
const ProgressInterval = 250 * time.Millisecond

// Progress is the progress line of one long operation on a terminal: MiB
// done of total, percentage, rate and time left, redrawn in place at most
// every ProgressInterval, and ended by Done with a final line. It counts the
// bytes written to the writer Start returns (tee the stream into it). A nil
// *Progress is progress turned off: it prints nothing. Not safe for
// concurrent use. (It is linked into the device binary: keep it small.)
type Progress struct {
	w           io.Writer
	label       string
	now         func() time.Time
	total, done int64
	start, last time.Time
	started     bool
}

// Progress returns the progress line of the operation label (such as
// "verify") on e.Stderr, or nil when progress is off: when stderr is not a
// terminal, when CI is set (as CI systems set it) or AIRLOCK_PROGRESS=0.
// AIRLOCK_PROGRESS=1 shows it on any stderr.
func (e *Env) Progress(label string) *Progress {
	if v := e.Getenv("AIRLOCK_PROGRESS"); v != "1" {
		f, ok := e.Stderr.(*os.File)
		if v == "0" || e.Getenv("CI") != "" || !ok || !term.IsTerminal(int(f.Fd())) {
			return nil
		}
	}
	return NewProgress(e.Stderr, label)
}

// NewProgress returns the progress line of the operation label on w, shown
// whether or not w is a terminal (Env.Progress decides that).
func NewProgress(w io.Writer, label string) *Progress {
	return &Progress{w: w, label: label, now: time.Now}
}

// Start begins counting an operation of total bytes and returns the writer
// that counts them; for a nil p it returns io.Discard. Its shape is that of
// the Progress hooks of library options (repo.Options, verify.Options):
// opts.Progress = p.Start. The first line is drawn after ProgressInterval.
func (p *Progress) Start(total int64) io.Writer {
	if p == nil {
		return io.Discard
	}
	p.total, p.done, p.started = total, 0, true
	p.start = p.now()
	p.last = p.start
	return p
}

// Write counts b and redraws the line if ProgressInterval has passed since
// the last redraw. It never fails.
func (p *Progress) Write(b []byte) (int, error) {
	p.Add(int64(len(b)))
	return len(b), nil
}

// Add counts n more bytes done, as Write does.
func (p *Progress) Add(n int64) {
	p.done += n
	if t := p.now(); t.Sub(p.last) >= ProgressInterval {
		p.last = t
		p.draw(false)
	}
}

// Done replaces the line with a final one, which says how long the
// operation took or, if it did not reach its total, where it stopped. It
// prints nothing if p is nil or Start was not called.
func (p *Progress) Done() {
	if p != nil && p.started {
		p.started = false
		p.draw(true)
	}
}

func (p *Progress) draw(final bool) {
	const mib = 1 << 20
	el := max(p.now().Sub(p.start), time.Millisecond)
	rate := float64(p.done) / el.Seconds()
	d, what, end := el.Round(time.Millisecond), "done in ", "\n"
	switch {
	case final && p.done < p.total:
		what = "stopped after "
	case !final:
		left := min(float64(p.total-p.done)/max(rate, 1), 1e9) // seconds
		d, what, end = time.Duration(left*1e9).Round(time.Second), "", " left"
	}
	pct := int64(100)
	if p.total > 0 {
		pct = p.done * 100 / p.total
	}
	// \r and "erase to the end of the line" redraw it in place.
	fmt.Fprintf(p.w, "\r\033[Kairlock: %s: %.1f/%.1f MiB (%d%%), %.1f MiB/s, %s%v%s",
		p.label, float64(p.done)/mib, float64(p.total)/mib, pct, rate/mib, what, d, end)
}
