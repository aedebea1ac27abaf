// Command deltabaseline is the "plain 4 KiB block reuse" baseline of the
// delta-update benchmark (bench/delta.sh), and the loopback HTTP server that
// benchmark downloads zchunk files from.
//
//	deltabaseline create OLD NEW DELTA   write a delta rebuilding NEW from OLD
//	deltabaseline apply OLD DELTA OUT    rebuild NEW into OUT
//	deltabaseline serve -dir DIR -log FILE [-timeout D]
//	                                     serve DIR on 127.0.0.1 (Range requests
//	                                     included); print the URL; log the body
//	                                     bytes of every response to FILE
//
// A block of NEW is reused when its SHA-256 equals that of some 4 KiB block
// of OLD at any offset that is a multiple of 4 KiB; the other blocks are
// concatenated and compressed with zstd (klauspost/compress, its best level,
// window at most 8 MiB), after the list of references. This is what any
// block-based updater can do without looking inside blocks; Airlock's delta
// is measured against it. create prints one line of statistics on stdout:
// "blocks N reused N literal N download BYTES".
//
// Threat model: none; a benchmark tool on files it made, and a file server
// on loopback for the duration of one benchmark. The delta reader is still
// bounded (MaxImageSize, DecoderMaxWindow) and fuzzed (FuzzApply).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "deltabaseline: error:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError string

func (u usageError) Error() string { return string(u) }

const usage = "usage: deltabaseline create OLD NEW DELTA | apply OLD DELTA OUT | serve -dir DIR -log FILE [-timeout D]"

func run(args []string) error {
	if len(args) == 0 {
		return usageError(usage)
	}
	switch args[0] {
	case "create":
		if len(args) != 4 {
			return usageError(usage)
		}
		return create(args[1], args[2], args[3])
	case "apply":
		if len(args) != 4 {
			return usageError(usage)
		}
		return apply(args[1], args[2], args[3])
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		dir := fs.String("dir", "", "directory to serve")
		logFile := fs.String("log", "", "file to append one line per response to: path and body bytes")
		timeout := fs.Duration("timeout", defaultServeTimeout, "exit after this long")
		if err := fs.Parse(args[1:]); err != nil || *dir == "" || *logFile == "" || fs.NArg() != 0 {
			return usageError(usage)
		}
		return serve(*dir, *logFile, *timeout)
	}
	return usageError(usage)
}

func create(oldPath, newPath, deltaPath string) error {
	if deltaPath == oldPath || deltaPath == newPath {
		return errors.New("the delta must not overwrite an image")
	}
	oldImg, err := os.Open(oldPath)
	if err != nil {
		return err
	}
	defer oldImg.Close()
	newImg, err := os.Open(newPath)
	if err != nil {
		return err
	}
	defer newImg.Close()
	f, err := os.OpenFile(deltaPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	st, err := Create(bw, oldImg, newImg)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("blocks %d reused %d literal %d download %d\n", st.Blocks, st.Reused, st.Literal, st.Download)
	return nil
}

func apply(oldPath, deltaPath, outPath string) error {
	if outPath == oldPath || outPath == deltaPath {
		return errors.New("the output must not overwrite an input")
	}
	oldImg, err := os.Open(oldPath)
	if err != nil {
		return err
	}
	defer oldImg.Close()
	delta, err := os.Open(deltaPath)
	if err != nil {
		return err
	}
	defer delta.Close()
	fi, err := delta.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	// No fsync, as for the other tools measured: apply time is the time to
	// the page cache.
	bw := bufio.NewWriterSize(out, 1<<20)
	err = Apply(bw, oldImg, delta, fi.Size())
	if err == nil {
		err = bw.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
