// Command tlogbench measures the transparency log on tessera's POSIX
// driver (what `repo publish` writes): appending N release entries, the
// checkpoint's size, and the sizes (and build and check times) of inclusion
// and consistency proofs at the final size. See bench/tlog.sh.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/tlog"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tlogbench:", err)
		os.Exit(1)
	}
}

func entry(i int) []byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "release %d", i))
	sig := sha256.Sum256(fmt.Appendf(nil, "signer %d", i%3))
	e := tlog.Entry{Type: tlog.EntryType, Product: "acme/router-x1", Version: fmt.Sprintf("1.%d.%d", i/1000, i%1000),
		Target: fmt.Sprintf("acme/router-x1/1.%d.%d/firmware.img.zst", i/1000, i%1000), TargetSHA256: fmt.Sprintf("%x", sum),
		ProvenanceSHA256: fmt.Sprintf("%x", sha256.Sum256(sum[:])), Role: "acme.router-x1", RoleVersion: int64(i + 1),
		Signers: []string{fmt.Sprintf("%x", sig), fmt.Sprintf("%x", sha256.Sum256(sig[:]))}, Logged: "2026-12-08T01:02:03Z"}
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

func run() error {
	n := flag.Int("n", 10000, "entries to append")
	single := flag.Int("single", 20, "entries appended one per publish (append, wait for the checkpoint), for the per-publish latency")
	dir := flag.String("dir", "", "log directory (default: a temporary directory)")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "tlogbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	key, err := keys.Generate(keys.Ed25519)
	if err != nil {
		return err
	}
	ns, _, err := repo.LogNoteSigner("airlock.log/bench", key)
	if err != nil {
		return err
	}
	ctx := context.Background()
	open := func(batch uint) (*tessera.Appender, func(context.Context) error, tessera.LogReader, context.CancelFunc, error) {
		c, cancel := context.WithCancel(ctx)
		drv, err := posix.New(c, posix.Config{Path: *dir})
		if err != nil {
			cancel()
			return nil, nil, nil, nil, err
		}
		a, shutdown, r, err := tessera.NewAppender(c, drv, tessera.NewAppendOptions().WithCheckpointSigner(ns).
			WithBatching(batch, 50*time.Millisecond).WithCheckpointInterval(100*time.Millisecond).
			WithCheckpointRepublishInterval(0).WithGarbageCollectionInterval(0))
		return a, shutdown, r, cancel, err
	}
	fmt.Printf("machine: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	fmt.Printf("date: %s\n", time.Now().UTC().Format(time.RFC3339))

	// One publish appending n entries.
	a, shutdown, _, cancel, err := open(uint(*n))
	if err != nil {
		return err
	}
	start := time.Now()
	futures := make([]tessera.IndexFuture, *n)
	var leafBytes int
	for i := range *n {
		leaf := entry(i)
		leafBytes += len(leaf)
		futures[i] = a.Add(ctx, tessera.NewEntry(leaf))
	}
	for _, f := range futures {
		if _, err := f(); err != nil {
			return err
		}
	}
	if err := shutdown(ctx); err != nil {
		return err
	}
	el := time.Since(start)
	cancel()
	fmt.Printf("append %d entries in one publish (integrated, checkpoint published): %v, %.0f entries/s; mean entry %d bytes\n",
		*n, el.Round(time.Millisecond), float64(*n)/el.Seconds(), leafBytes / *n)

	// Publishes of one entry each (append, integrate, sign a checkpoint).
	var lat []time.Duration
	for i := range *single {
		a, shutdown, _, cancel, err := open(1)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := a.Add(ctx, tessera.NewEntry(entry(*n+i)))(); err != nil {
			return err
		}
		if err := shutdown(ctx); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
		cancel()
	}
	size := uint64(*n + *single)
	if len(lat) > 0 {
		var sum time.Duration
		for _, l := range lat {
			sum += l
		}
		fmt.Printf("publish of one entry (open, append, integrate, checkpoint), %d runs: mean %v\n", len(lat), (sum / time.Duration(len(lat))).Round(time.Millisecond))
	}

	cp, err := os.ReadFile(filepath.Join(*dir, "checkpoint"))
	if err != nil {
		return err
	}
	fmt.Printf("checkpoint (log signature, no cosignature): %d bytes; each cosignature/v1 line adds about %d bytes\n", len(cp), len("— w1.example.com ")+len(base64.StdEncoding.EncodeToString(make([]byte, 4+8+64)))+1)
	var du int64
	filepath.Walk(*dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			du += fi.Size()
		}
		return nil
	})
	fmt.Printf("log directory: %d bytes for %d entries (%.0f bytes/entry)\n", du, size, float64(du)/float64(size))

	fetch := client.FileFetcher{Root: *dir}
	t0 := time.Now()
	pb, err := client.NewProofBuilder(ctx, size, fetch.ReadTile)
	if err != nil {
		return err
	}
	rootHash, err := rootOf(cp)
	if err != nil {
		return err
	}
	var maxIncl, maxCons int
	var verify time.Duration
	samples := []uint64{0, 1, size / 3, size / 2, size - 2, size - 1}
	for _, idx := range samples {
		p, err := pb.InclusionProof(ctx, idx)
		if err != nil {
			return err
		}
		maxIncl = max(maxIncl, len(p))
		leaf := entry(int(idx))
		v0 := time.Now()
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, size, rfc6962.DefaultHasher.HashLeaf(leaf), p, rootHash); err != nil {
			return fmt.Errorf("inclusion %d: %w", idx, err)
		}
		verify += time.Since(v0)
	}
	consSamples := []uint64{1, 2, size / 2, size - 1, uint64(*n)}
	for _, old := range consSamples {
		p, err := pb.ConsistencyProof(ctx, old, size)
		if err != nil {
			return err
		}
		maxCons = max(maxCons, len(p))
	}
	fmt.Printf("proofs at size %d: inclusion at most %d hashes (%d bytes), consistency at most %d hashes (%d bytes); built from tiles in %v (%d inclusion + %d consistency)\n",
		size, maxIncl, maxIncl*32, maxCons, maxCons*32, time.Since(t0).Round(time.Microsecond), len(samples), len(consSamples))
	fmt.Printf("inclusion proof check: %v each (mean of %d)\n", (verify / time.Duration(len(samples))).Round(time.Microsecond/10), len(samples))
	return nil
}

func rootOf(cp []byte) ([]byte, error) {
	lines := strings.SplitN(string(cp), "\n", 4)
	if len(lines) < 4 {
		return nil, fmt.Errorf("malformed checkpoint")
	}
	return base64.StdEncoding.DecodeString(lines[2])
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
