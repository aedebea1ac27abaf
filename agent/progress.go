package agent

import (
	"sync"
	"time"
)

// ProgressLogInterval is the time between two progress log records.
const ProgressLogInterval = 10 * time.Second

// Progress is told about a target download: Start once (total is the
// signed length, 0 if unknown), Update with the bytes received so far, Done
// at the end of the stream. (A bar on a terminal is the command line's:
// internal/cli/devicecmd.)
type Progress interface {
	Start(name string, total int64)
	Update(received int64)
	Done()
}

// NewProgressLog returns a Progress that logs the download as records of
// log: "downloading" at the start and every ProgressLogInterval (target,
// received and total bytes), "downloaded" at the end (seconds).
func NewProgressLog(log Logger) Progress {
	return &progressLog{log: log, now: time.Now}
}

type progressLog struct {
	log Logger
	now func() time.Time

	mu          sync.Mutex
	name        string
	total, got  int64
	start, last time.Time
	active      bool
}

func (p *progressLog) Start(name string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.got, p.active = name, total, 0, true
	p.start = p.now()
	p.last = p.start
	p.log.Info("downloading", "target", name, "total", total)
}

func (p *progressLog) Update(received int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = received
	if now := p.now(); p.active && now.Sub(p.last) >= ProgressLogInterval {
		p.last = now
		p.log.Info("downloading", "target", p.name, "received", received, "total", p.total)
	}
}

func (p *progressLog) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active {
		p.active = false
		p.log.Info("downloaded", "target", p.name, "received", p.got, "seconds", p.now().Sub(p.start).Seconds())
	}
}
