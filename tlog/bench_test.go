package tlog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/airlockfw/airlock/tlog"
)

// BenchmarkDeviceVerify measures what a device spends on the transparency
// check of one install (docs/benchmarks.md): a 10,000-entry log, a
// checkpoint with two witness cosignatures (threshold 2), the entry's
// inclusion proof and a consistency proof from the 5,000-entry checkpoint
// the device holds, read from an offline bundle's log proof (parse
// included). It reports the proof's encoded size.
func BenchmarkDeviceVerify(b *testing.B) {
	w := newWorld(b, 5000)
	p, r := w.prove(b, "1.0.2500", nil)
	held, err := p.Verify(w.pol, nil, r)
	if err != nil {
		b.Fatal(err)
	}
	w.add(b, 5000, 10000)
	p, r = w.prove(b, "1.0.7777", held)
	enc, err := p.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		bp, err := tlog.ParseProof(enc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bp.Verify(w.pol, held, r); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: ResetTimer drops metrics reported before it.
	b.ReportMetric(float64(len(enc)), "proof-bytes")
	b.ReportMetric(float64(len(p.Inclusion)), "inclusion-hashes")
	b.ReportMetric(float64(len(p.Consistency[0].Hashes)), "consistency-hashes")
	b.ReportMetric(float64(len(p.Checkpoint)), "checkpoint-bytes")
}

// countingFetcher counts what a Prover reads.
type countingFetcher struct {
	f            tlog.Fetcher
	files, bytes int
}

func (c *countingFetcher) FetchLog(ctx context.Context, path string, max int64) ([]byte, error) {
	b, err := c.f.FetchLog(ctx, path, max)
	c.files++
	c.bytes += len(b)
	return b, err
}

// BenchmarkOnlineProve measures a device online: building the proof from
// the served log files of a 10,000-entry log (local files, no network)
// and verifying it, with a consistency proof from 5,000 entries. It
// reports the files and bytes one install reads.
func BenchmarkOnlineProve(b *testing.B) {
	w := newWorld(b, 5000)
	p, r := w.prove(b, "1.0.2500", nil)
	held, err := p.Verify(w.pol, nil, r)
	if err != nil {
		b.Fatal(err)
	}
	w.add(b, 5000, 10000)
	var c *countingFetcher
	b.ResetTimer()
	for b.Loop() {
		c = &countingFetcher{f: w.log}
		p, err := tlog.NewProver(c).Prove(context.Background(), r.TargetSHA256, []uint64{held.Size})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Verify(w.pol, held, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.files), "files")
	b.ReportMetric(float64(c.bytes), "fetched-bytes")
}

// BenchmarkEd25519VerifyBaseline is the same-run baseline of the device
// figures above (bench/tlog.sh prints their ratio to it): one Ed25519
// signature check over a checkpoint-sized message, the unit of work a
// device already does for every signed metadata file.
func BenchmarkEd25519VerifyBaseline(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("signature does not verify")
		}
	}
}
