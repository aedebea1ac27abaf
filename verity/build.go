package verity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
)

// Build reads the data (length bytes, p.DataBlocks = BlocksFor(length); a
// short last block is hashed zero-padded, as veritysetup sees a device
// padded to whole blocks), writes the tree at [0, p.TreeSize()) of tree, and
// returns the root hash.
//
// Data is read in runs of 128 blocks (512 KiB, one level-0 hash block's
// worth), hashed on every core, and each level-0 hash block is written as
// soon as its run is hashed. Memory is a few runs plus the digests of the
// level-0 hash blocks (32 bytes per 512 KiB of data), whatever the size of
// the image.
func Build(data io.Reader, length int64, p Params, tree io.WriterAt) (root []byte, err error) {
	return build(data, length, p, tree, cores())
}

// run is 128 data blocks and the level-0 hash block over them.
type run struct {
	index int64  // run number = level-0 hash block number
	n     int    // data blocks in this run (the last run may be short)
	data  []byte // perBlock*BlockSize
	sums  []byte // the level-0 hash block: n digests, zero-padded
	top   [DigestSize]byte
	err   error // the read failed; the last run sent
	done  chan struct{}
}

type builder struct {
	data   io.Reader
	length int64
	p      Params
	g      geometry
	tree   io.WriterAt
	up     []byte // digests of the level-0 hash blocks, in order
	root   []byte
}

// read fills r with run i of the data, zero-padding past length.
func (b *builder) read(r *run, i int64) {
	r.index = i
	r.n = int(min(perBlock, b.p.DataBlocks-i*perBlock))
	off := i * perBlock * BlockSize
	want := int(min(int64(r.n*BlockSize), b.length-off))
	if _, err := io.ReadFull(b.data, r.data[:want]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.err = fmt.Errorf("verity: reading data at byte %d: %w", off, err)
	}
	clear(r.data[want : r.n*BlockSize])
}

// hash fills r.sums and r.top.
func (b *builder) hash(h hash.Hash, r *run) {
	hashBlocks(h, b.p.Salt, r.data[:r.n*BlockSize], r.sums)
	clear(r.sums[r.n*DigestSize:])
	digest(h, b.p.Salt, r.sums, r.top[:])
}

// emit writes r's level-0 hash block and keeps its digest.
func (b *builder) emit(r *run) error {
	if b.g.levels == 0 { // one data block: its digest is the root
		b.root = append([]byte(nil), r.sums[:DigestSize]...)
		return nil
	}
	if err := writeBlock(b.tree, r.sums, (b.g.start[0]+r.index)*BlockSize); err != nil {
		return err
	}
	b.up = append(b.up, r.top[:]...)
	return nil
}

func newRun() *run {
	return &run{data: make([]byte, perBlock*BlockSize), sums: make([]byte, BlockSize), done: make(chan struct{}, 1)}
}

func build(data io.Reader, length int64, p Params, tree io.WriterAt, workers int) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if BlocksFor(length) != p.DataBlocks {
		return nil, fmt.Errorf("%w: DataBlocks %d, but %d bytes make %d blocks", ErrParams, p.DataBlocks, length, BlocksFor(length))
	}
	p.Salt = append([]byte(nil), p.Salt...)
	runs := (p.DataBlocks + perBlock - 1) / perBlock
	b := &builder{data: data, length: length, p: p, g: layout(p.DataBlocks), tree: tree}
	b.up = make([]byte, 0, runs*DigestSize)
	var err error
	if workers <= 1 || runs == 1 {
		err = b.serial(runs)
	} else {
		err = b.parallel(runs, workers)
	}
	if err != nil {
		return nil, err
	}
	if b.g.levels == 0 {
		return b.root, nil
	}
	return b.upper()
}

func (b *builder) serial(runs int64) error {
	r, h := newRun(), sha256.New()
	for i := int64(0); i < runs; i++ {
		if b.read(r, i); r.err != nil {
			return r.err
		}
		b.hash(h, r)
		if err := b.emit(r); err != nil {
			return err
		}
	}
	return nil
}

// parallel: one goroutine reads runs in order, workers hash them, and the
// caller writes them out in order. workers+2 runs circulate, so reading,
// hashing and writing overlap with bounded memory.
func (b *builder) parallel(runs int64, workers int) error {
	workers = int(min(int64(workers), runs))
	slots := workers + 2
	if int64(slots) > runs {
		slots = int(runs)
	}
	free := make(chan *run, slots)
	work := make(chan *run, slots)
	order := make(chan *run, slots)
	quit := make(chan struct{})
	for range slots {
		free <- newRun()
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			h := sha256.New()
			for r := range work {
				b.hash(h, r)
				r.done <- struct{}{}
			}
			wg.Done()
		}()
	}
	wg.Add(1)
	go func() { // reader; never blocks on work or order: at most slots runs exist
	reading:
		for i := int64(0); i < runs; i++ {
			var r *run
			select {
			case r = <-free:
			case <-quit:
				break reading
			}
			b.read(r, i)
			order <- r
			if r.err != nil {
				break
			}
			work <- r
		}
		close(order)
		close(work)
		wg.Done()
	}()
	var err error
	for r := range order {
		if r.err != nil {
			err = r.err
			break
		}
		<-r.done
		if err = b.emit(r); err != nil {
			break
		}
		free <- r
	}
	close(quit)
	wg.Wait() // no goroutine touches data or tree after Build returns
	return err
}

// upper writes levels 1 and above from the digests of the level below and
// returns the root hash.
func (b *builder) upper() ([]byte, error) {
	h, blk, below := sha256.New(), make([]byte, BlockSize), b.up
	for lvl := 1; lvl < b.g.levels; lvl++ {
		next := make([]byte, b.g.count[lvl]*DigestSize)
		for i := int64(0); i < b.g.count[lvl]; i++ {
			clear(blk)
			copy(blk, below[i*BlockSize:])
			if err := writeBlock(b.tree, blk, (b.g.start[lvl]+i)*BlockSize); err != nil {
				return nil, err
			}
			digest(h, b.p.Salt, blk, next[i*DigestSize:])
		}
		below = next
	}
	return below[:DigestSize:DigestSize], nil
}
