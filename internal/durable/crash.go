package durable

import (
	"math/rand/v2"
	"slices"
)

// CutAfter arms a power cut at the n-th write-boundary op counted from this
// call (1 = the very next op) and resets the op counter, so Ops() afterwards
// counts ops since arming. CutAfter(0) disarms (and also resets the counter).
// To enumerate every cut point of an operation:
//
//	m := setup(); m.CutAfter(0); run(m); n := m.Ops()
//	for i := 1; i <= n; i++ { m := setup(); m.CutAfter(i); run(m); m.Crash(); check(m) }
func (m *Mem) CutAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops = 0
	m.cutAt = max(n, 0)
}

// Ops returns the number of write-boundary ops performed since NewMem or the
// last CutAfter call, including an op failed by the cut.
func (m *Mem) Ops() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// PoweredOff reports whether an armed power cut has happened and the
// system has not yet been Crash'ed (rebooted).
func (m *Mem) PoweredOff() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

// Crash applies power loss and "reboots": every file's data is reset to its
// synced content, every directory's entries to its synced entries, any armed
// cut is disarmed, the power is back on, and every open File is invalidated
// (further use fails). Crash may be called whether or not a cut happened.
func (m *Mem) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crash(func(ino *inode) {
		ino.data = slices.Clone(ino.synced)
		ino.entries = cloneEntries(ino.syncedEntries)
	})
}

// CrashTorn is Crash with torn writes: for every file (and directory) it
// keeps a random prefix of the unsynced changes since its last sync,
// including possibly a random byte prefix of the first change not kept
// whole, as a disk whose cache was partly flushed would. The randomness is
// seeded by seed, so a failing seed reproduces. Changes are kept per file
// and per directory independently, in program order within each; real
// filesystems may reorder more than that, so this is a stronger test than
// Crash but not an exhaustive one. Synced state is never lost.
func (m *Mem) CrashTorn(seed int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := rand.New(rand.NewPCG(uint64(seed), 0x61697226c6f636b)) // "airlock"
	m.crash(func(ino *inode) {
		if ino.dir {
			k := r.IntN(len(ino.pendingDir) + 1)
			e := cloneEntries(ino.syncedEntries)
			for _, op := range ino.pendingDir[:k] {
				if op.ino == nil {
					delete(e, op.name)
				} else {
					e[op.name] = op.ino
				}
			}
			ino.entries = e
			return
		}
		k := r.IntN(len(ino.pending) + 1)
		d := slices.Clone(ino.synced)
		for _, op := range ino.pending[:k] {
			d = applyFileOp(d, op)
		}
		if k < len(ino.pending) && ino.pending[k].data != nil {
			op := ino.pending[k]
			op.data = op.data[:r.IntN(len(op.data)+1)]
			d = applyFileOp(d, op)
		}
		ino.data = d
	})
}

// crash reverts every inode with revert, then makes the result the new
// synced state, drops unreachable inodes and invalidates open files.
func (m *Mem) crash(revert func(*inode)) {
	ids := make([]uint64, 0, len(m.inodes))
	for id := range m.inodes {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic order for CrashTorn
	for _, id := range ids {
		revert(m.inodes[id])
	}
	for _, ino := range m.inodes {
		ino.synced = slices.Clone(ino.data)
		ino.pending = nil
		if ino.dir {
			ino.syncedEntries = cloneEntries(ino.entries)
			ino.pendingDir = nil
		}
	}
	reachable := map[uint64]*inode{}
	var walk func(*inode)
	walk = func(ino *inode) {
		if _, ok := reachable[ino.id]; ok {
			return
		}
		reachable[ino.id] = ino
		for _, c := range ino.entries {
			walk(c)
		}
	}
	walk(m.root)
	m.inodes = reachable
	m.cutAt = 0
	m.down = false
	m.gen++
}

func cloneEntries(e map[string]*inode) map[string]*inode {
	if e == nil {
		return nil
	}
	c := make(map[string]*inode, len(e))
	for k, v := range e {
		c[k] = v
	}
	return c
}

func applyFileOp(d []byte, op fileOp) []byte {
	if op.data == nil {
		return resize(d, op.size)
	}
	end := op.off + int64(len(op.data))
	if end > int64(len(d)) {
		d = resize(d, end)
	}
	copy(d[op.off:], op.data)
	return d
}

func resize(d []byte, size int64) []byte {
	if size <= int64(len(d)) {
		return d[:size]
	}
	return append(d, make([]byte, size-int64(len(d)))...)
}
