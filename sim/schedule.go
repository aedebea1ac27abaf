package sim

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// schedule is the poll queue of a fleet: devices ordered by their next poll
// time, handed to the workers by run when due. A device is either in the
// queue or owned by one worker, never both.
type schedule[D any] struct {
	mu   sync.Mutex
	q    dueHeap[D]
	wake chan struct{}
}

func newSchedule[D any]() *schedule[D] {
	return &schedule[D]{wake: make(chan struct{}, 1)}
}

// push queues d for a poll at the given time (unix nanoseconds).
func (s *schedule[D]) push(d D, at int64) {
	s.mu.Lock()
	heap.Push(&s.q, dueItem[D]{at: at, d: d})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run hands due devices to work until ctx ends.
func (s *schedule[D]) run(ctx context.Context, work chan<- D) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var due D
		ok := false
		wait := time.Hour
		if len(s.q) > 0 {
			if w := time.Duration(s.q[0].at - time.Now().UnixNano()); w <= 0 {
				due, ok = heap.Pop(&s.q).(dueItem[D]).d, true
			} else {
				wait = w
			}
		}
		s.mu.Unlock()
		if ok {
			select {
			case work <- due:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

type dueItem[D any] struct {
	at int64 // unix nanoseconds
	d  D
}

// dueHeap orders items by poll time.
type dueHeap[D any] []dueItem[D]

func (h dueHeap[D]) Len() int           { return len(h) }
func (h dueHeap[D]) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap[D]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap[D]) Push(x any)        { *h = append(*h, x.(dueItem[D])) }
func (h *dueHeap[D]) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = dueItem[D]{}
	*h = old[:len(old)-1]
	return x
}
