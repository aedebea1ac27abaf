// Command deltasize measures Airlock's delta format (packages delta and
// delta/deltaenc) on a pair of images: the bytes of the delta, the time to
// create it and the time to apply it.
//
//	deltasize create [-nodict] [-dict BYTES] [-window BYTES] OLD NEW DELTA
//	        write a delta rebuilding NEW from OLD; print its statistics and
//	        the creation time
//	deltasize apply OLD DELTA OUT
//	        rebuild the new image into OUT (no fsync, as the other tools of
//	        bench/delta.sh: apply time is the time to the page cache); print
//	        the apply time. Run it under /usr/bin/time -v for its peak RSS.
//	deltasize run [-nodict] [-dict BYTES] [-window BYTES] OLD NEW
//	        create, apply in this process, and compare with NEW
//	deltasize online [-frames BYTES] OLD NEW
//	        the online delta (range requests, no delta artefact): build the
//	        schema 2 payloads of OLD and NEW (raw, or zstd frames of BYTES
//	        installed bytes), install OLD into a slot file, then install NEW
//	        with payload.CopyReuse fetching ranges of NEW's payload file;
//	        print the bytes and requests fetched and the time, and compare
//	        the slot with NEW
//
// apply checks nothing against a hash tree (the device's install does):
// compare OUT with the new image (cmp) to know the delta is right.
//
// Threat model: none; a benchmark tool on files it made.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/delta"
	"github.com/airlockfw/airlock/delta/deltaenc"
	"github.com/airlockfw/airlock/internal/payload"
)

const usage = `usage: deltasize create [-nodict] [-dict BYTES] [-window BYTES] OLD NEW DELTA
       deltasize apply OLD DELTA OUT
       deltasize run [-nodict] [-dict BYTES] [-window BYTES] OLD NEW
       deltasize online [-frames BYTES] OLD NEW`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "deltasize: error:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError string

func (u usageError) Error() string { return string(u) }

func run(args []string) error {
	if len(args) == 0 {
		return usageError(usage)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	var opt deltaenc.Options
	fs.BoolVar(&opt.NoDict, "nodict", false, "compress windows without a dictionary (plain block reuse)")
	fs.IntVar(&opt.DictSize, "dict", 0, "dictionary bytes per window (default delta.MaxDictSize)")
	fs.IntVar(&opt.WindowSize, "window", 0, "new bytes per window (default delta.MaxWindowSize)")
	frames := fs.Int64("frames", 0, "online: zstd frames of this many installed bytes (default: uncompressed)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(err.Error())
	}
	a := fs.Args()
	switch {
	case args[0] == "create" && len(a) == 3:
		_, err := create(a[0], a[1], a[2], opt)
		return err
	case args[0] == "apply" && len(a) == 3:
		return apply(a[0], a[1], a[2])
	case args[0] == "online" && len(a) == 2:
		return online(a[0], a[1], *frames)
	case args[0] == "run" && len(a) == 2:
		dir, err := os.MkdirTemp("", "deltasize-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		d, out := filepath.Join(dir, "delta"), filepath.Join(dir, "out")
		if _, err := create(a[0], a[1], d, opt); err != nil {
			return err
		}
		if err := apply(a[0], d, out); err != nil {
			return err
		}
		return same(out, a[1])
	}
	return usageError(usage)
}

func create(oldPath, newPath, deltaPath string, opt deltaenc.Options) (*deltaenc.Stats, error) {
	oldImg, oldLen, err := open(oldPath)
	if err != nil {
		return nil, err
	}
	defer oldImg.Close()
	newImg, newLen, err := open(newPath)
	if err != nil {
		return nil, err
	}
	defer newImg.Close()
	out, err := os.Create(deltaPath)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	st, err := deltaenc.Create(bw, oldImg, oldLen, newImg, newLen, opt)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	fmt.Print(st)
	fmt.Printf("create seconds  %.2f\n", st.Duration.Seconds())
	return st, nil
}

func apply(oldPath, deltaPath, outPath string) error {
	start := time.Now()
	oldImg, _, err := open(oldPath)
	if err != nil {
		return err
	}
	defer oldImg.Close()
	df, _, err := open(deltaPath)
	if err != nil {
		return err
	}
	defer df.Close()
	r, err := delta.NewReader(bufio.NewReaderSize(df, 64<<10))
	if err != nil {
		return err
	}
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	end := r.NewLength()
	err = r.Apply(context.Background(), oldImg, func(first int64, blocks []byte) error {
		off := first * delta.BlockSize
		n := min(int64(len(blocks)), end-off)
		_, err := out.Write(blocks[:n])
		return err
	})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("apply seconds   %.2f\n", time.Since(start).Seconds())
	return nil
}

func open(p string) (*os.File, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// same fails unless files a and b have the same bytes.
func same(a, b string) error {
	fa, _, err := open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, _, err := open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	x, y := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; {
		n, errA := io.ReadFull(ra, x)
		m, errB := io.ReadFull(rb, y)
		if n != m || !bytes.Equal(x[:n], y[:m]) {
			return fmt.Errorf("%s and %s differ near byte %d", a, b, off)
		}
		off += int64(n)
		if errA != nil || errB != nil {
			if (errA == io.EOF || errA == io.ErrUnexpectedEOF) && errA == errB {
				fmt.Println("output matches the new image")
				return nil
			}
			return errors.Join(errA, errB)
		}
	}
}

// online measures the online delta: see the package comment.
func online(oldPath, newPath string, frameSize int64) error {
	dir, err := os.MkdirTemp("", "deltasize-online-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	salt := []byte("deltasize online salt")
	build := func(img, name string) (*payload.Built, *os.File, error) {
		in, n, err := open(img)
		if err != nil {
			return nil, nil, err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		b, err := payload.BuildIndexed(out, bufio.NewReaderSize(in, 1<<20), n, payload.BuildOptions{Salt: salt, FrameSize: frameSize})
		if err != nil {
			out.Close()
			return nil, nil, err
		}
		return b, out, nil
	}
	ob, of, err := build(oldPath, "old.payload")
	if err != nil {
		return err
	}
	defer of.Close()
	nb, nf, err := build(newPath, "new.payload")
	if err != nil {
		return err
	}
	defer nf.Close()
	slotFile := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	}
	oldSlot, err := slotFile("slot-a")
	if err != nil {
		return err
	}
	defer oldSlot.Close()
	oe := ob.Indexed(salt)
	if _, err := payload.CopyIndexed(oldSlot, io.NewSectionReader(of, 0, ob.Length), oe, payload.CopyOptions{}); err != nil {
		return fmt.Errorf("installing OLD: %w", err)
	}
	newSlot, err := slotFile("slot-b")
	if err != nil {
		return err
	}
	defer newSlot.Close()
	base := payload.Base{Slot: oldSlot, Length: ob.InstalledLength, Salt: salt, Root: ob.Root[:], TreeLength: ob.TreeLength}
	start := time.Now()
	res, err := payload.CopyReuse(newSlot, nb.Indexed(salt), base, func(off, n int64) (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(nf, off, n)), nil
	}, payload.CopyOptions{})
	if errors.Is(err, payload.ErrNoBase) {
		// What a device does then: the whole payload, after the ranges
		// it fetched to find out (the new tree).
		fmt.Printf("fallback        %v\n", err)
		var whole payload.Result
		whole, err = payload.CopyIndexed(newSlot, io.NewSectionReader(nf, 0, nb.Length), nb.Indexed(salt), payload.CopyOptions{})
		res.TransportBytes += whole.TransportBytes
		res.Requests++
	}
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("payload bytes   %d\n", nb.Length)
	fmt.Printf("fetched bytes   %d\n", res.TransportBytes)
	fmt.Printf("requests        %d\n", res.Requests)
	fmt.Printf("reused blocks   %d of %d\n", res.ReusedBlocks, (nb.InstalledLength+4095)/4096)
	fmt.Printf("online seconds  %.2f\n", secs)
	img := filepath.Join(dir, "slot-b.img")
	if err := newSlot.Truncate(nb.InstalledLength); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "slot-b"), img); err != nil {
		return err
	}
	return same(img, newPath)
}
