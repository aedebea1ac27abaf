// Package verity builds and checks the dm-verity hash tree (format version
// 1, no superblock) over a firmware image, so that one tree serves three
// uses: the install verifies every block before writing it, a delta update
// matches blocks against it, and on real devices the kernel's dm-verity
// target reads through it with the vendor-signed root hash
// (`veritysetup open --no-superblock ...`).
//
// Threat model: the root hash comes from signed release metadata; the tree
// and the data come from an untrusted source (network, bundle, the slot
// itself). Nothing here trusts a byte of tree or data that has not been
// chained to the root: [ReadTree] verifies each hash block against its
// parent before writing it, and [Tree.Check] verifies data blocks against
// the verified tree. Parameters are fixed (SHA-256, 4 KiB blocks): the
// algorithm is not negotiable.
//
// The format, as in the kernel's drivers/md/dm-verity-target.c (verity_ctr)
// and cryptsetup's lib/verity/verity_hash.c (version 1):
//
//   - a digest is SHA-256(salt || block);
//   - a hash block holds BlockSize/DigestSize digests of the level below,
//     zero-padded to BlockSize;
//   - there are L levels, L the smallest integer >= 0 with
//     (BlockSize/DigestSize)^L >= data blocks (so one data block has no
//     tree at all, and its digest is the root hash);
//   - level i (0 hashes the data) has ceil(blocks / 128^(i+1)) blocks;
//   - the tree stores the top level first and level 0 last;
//   - the root hash is the digest of the single top-level block.
//
// See docs/verity.md.
package verity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"sync"
)

const (
	BlockSize     = 4096 // the only data and hash block size accepted today
	DigestSize    = 32   // sha256
	Algorithm     = "sha256"
	MaxSaltSize   = 256     // dm-verity's limit
	MaxDataBlocks = 1 << 24 // 64 GiB of 4 KiB blocks (named limit; refuse more)
)

const (
	perBlock    = BlockSize / DigestSize // digests per hash block (128)
	perBits     = 7                      // log2(perBlock)
	maxLevels   = 4                      // levels of MaxDataBlocks: 128^4 >= 1<<24
	parallelMin = 64                     // blocks below which Check hashes serially
)

var (
	// ErrParams: the parameters are outside what this package accepts.
	ErrParams = errors.New("verity: invalid parameters")
	// ErrTree: the hash tree does not chain to the root hash: it is
	// corrupt, truncated, for another image or salt, or tampered with.
	ErrTree = errors.New("verity: hash tree does not match the signed root hash (corrupt, truncated, or tampered)")
	// ErrBlock: a data block does not match the verified tree.
	ErrBlock = errors.New("verity: data block does not match the signed hash tree (corrupt or tampered)")
)

// Params are the dm-verity parameters of one image, as signed in its
// release metadata.
type Params struct {
	DataBlockSize int    // must be BlockSize
	HashBlockSize int    // must be BlockSize
	Salt          []byte // 0..MaxSaltSize bytes
	DataBlocks    int64  // 1..MaxDataBlocks
}

// Validate refuses parameters this package does not accept. The error wraps
// ErrParams and names the field and its limit.
func (p Params) Validate() error {
	switch {
	case p.DataBlockSize != BlockSize:
		return fmt.Errorf("%w: DataBlockSize %d, want %d", ErrParams, p.DataBlockSize, BlockSize)
	case p.HashBlockSize != BlockSize:
		return fmt.Errorf("%w: HashBlockSize %d, want %d", ErrParams, p.HashBlockSize, BlockSize)
	case len(p.Salt) > MaxSaltSize:
		return fmt.Errorf("%w: Salt %d bytes, limit %d", ErrParams, len(p.Salt), MaxSaltSize)
	case p.DataBlocks < 1 || p.DataBlocks > MaxDataBlocks:
		return fmt.Errorf("%w: DataBlocks %d, want 1..%d", ErrParams, p.DataBlocks, MaxDataBlocks)
	}
	return nil
}

// TreeSize is the size in bytes of the whole tree as stored (no
// superblock): 0 for one data block, and 0 for parameters Validate refuses.
func (p Params) TreeSize() int64 {
	if p.Validate() != nil {
		return 0
	}
	return layout(p.DataBlocks).total * BlockSize
}

// BlocksFor is the number of data blocks covering length bytes, the last
// one zero-padded.
func BlocksFor(length int64) int64 {
	if length <= 0 {
		return 0
	}
	n := length / BlockSize
	if length%BlockSize != 0 {
		n++
	}
	return n
}

// geometry is where each level lives in the tree, in blocks.
type geometry struct {
	levels int
	start  [maxLevels]int64 // first block of level i
	count  [maxLevels]int64 // blocks of level i
	total  int64
}

// layout follows verity_ctr: levels while (blocks-1) >> (7*levels) != 0,
// then the top level is stored first.
func layout(blocks int64) geometry {
	var g geometry
	for g.levels < maxLevels && (blocks-1)>>(perBits*g.levels) != 0 {
		g.levels++
	}
	for i := g.levels - 1; i >= 0; i-- {
		shift := uint(perBits * (i + 1))
		g.start[i] = g.total
		g.count[i] = (blocks + 1<<shift - 1) >> shift
		g.total += g.count[i]
	}
	return g
}

// digest writes SHA-256(salt || b) into out[:DigestSize].
func digest(h hash.Hash, salt, b, out []byte) {
	h.Reset()
	h.Write(salt)
	h.Write(b)
	h.Sum(out[:0])
}

// hashBlocks writes the digest of each BlockSize block of data into sums.
func hashBlocks(h hash.Hash, salt, data, sums []byte) {
	for i := 0; i*BlockSize < len(data); i++ {
		digest(h, salt, data[i*BlockSize:(i+1)*BlockSize], sums[i*DigestSize:])
	}
}

// hashAll is hashBlocks spread over up to workers goroutines, each taking a
// contiguous run of blocks.
func hashAll(workers int, salt, data, sums []byte) {
	n := len(data) / BlockSize
	if workers > n/parallelMin*2 {
		workers = n / parallelMin * 2
	}
	if workers <= 1 {
		hashBlocks(sha256.New(), salt, data, sums)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			hashBlocks(sha256.New(), salt, data[lo*BlockSize:hi*BlockSize], sums[lo*DigestSize:])
			wg.Done()
		}()
	}
	wg.Wait()
}

func cores() int { return runtime.GOMAXPROCS(0) }
