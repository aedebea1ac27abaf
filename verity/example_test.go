package verity_test

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/airlockfw/airlock/verity"
)

// The vendor builds the tree of an image; the device reads the tree,
// verified against the signed root hash, then checks each block of the
// image before writing it.
func Example() {
	image := bytes.Repeat([]byte("firmware"), 100_000) // 800,000 bytes
	p := verity.Params{
		DataBlockSize: verity.BlockSize,
		HashBlockSize: verity.BlockSize,
		Salt:          []byte("vendor salt"),
		DataBlocks:    verity.BlocksFor(int64(len(image))),
	}
	dir, err := os.MkdirTemp("", "verity-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// Vendor side: the tree, and the root hash to sign.
	tree, err := os.Create(dir + "/tree")
	if err != nil {
		panic(err)
	}
	defer tree.Close()
	root, err := verity.Build(bytes.NewReader(image), int64(len(image)), p, tree)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d data blocks, tree %d bytes, root %x\n", p.DataBlocks, p.TreeSize(), root)

	// Device side: the tree arrives as a stream and is stored only once
	// verified; then the blocks are checked, the last one zero-padded.
	stored, err := os.Create(dir + "/stored-tree")
	if err != nil {
		panic(err)
	}
	defer stored.Close()
	t, err := verity.ReadTree(io.NewSectionReader(tree, 0, p.TreeSize()), p, root, stored, 0)
	if err != nil {
		panic(err)
	}
	blocks := append(image, make([]byte, int(p.DataBlocks)*verity.BlockSize-len(image))...)
	fmt.Println(t.Check(stored, 0, blocks))
	blocks[100_000] ^= 1
	fmt.Println(t.Check(stored, 0, blocks))
	// (veritysetup format --no-superblock prints the same root hash.)

	// Output:
	// 196 data blocks, tree 12288 bytes, root e04a2f3769e32f7a7faf98bf5d52dc5cadb81dc1b5264a51df9774b00459187c
	// <nil>
	// verity: data block does not match the signed hash tree (corrupt or tampered): block 24
}
