package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAppendVerifyRoundTrip(t *testing.T) {
	dir, signer := writeLog(t, 25, 10)
	rep, err := Verify(dir, signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoints at 10 and 20 while appending, and 25 at Close.
	if rep.Entries != 25 || rep.Checkpoints != 3 || rep.Unsigned != 0 || rep.Last.Size != 25 || rep.Last.Root != rep.Root {
		t.Fatalf("report = %+v", rep)
	}

	// Reopen, append more, checkpoint on demand: the log continues.
	l, err := Open(dir, signer, Options{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	if l.Size() != 25 {
		t.Fatalf("reopened size = %d", l.Size())
	}
	for i := 25; i < 31; i++ {
		if seq, err := l.Append(t.Context(), sampleEntry(i)); err != nil || seq != uint64(i) {
			t.Fatalf("Append = %d, %v", seq, err)
		}
	}
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := l.Checkpoint(); err != nil { // nothing new: no duplicate checkpoint
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), sampleEntry(31)); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(dir, signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 32 || rep.Checkpoints != 4 || rep.Unsigned != 1 {
		t.Fatalf("report = %+v", rep)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := l.Append(t.Context(), sampleEntry(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	got, err := Query(dir, Filter{})
	if err != nil || len(got) != 32 {
		t.Fatalf("Query = %d entries, %v", len(got), err)
	}
	if got[3].Seq != 3 || got[3].Actor != sampleEntry(3).Actor || !got[3].Time.Equal(sampleEntry(3).Time) {
		t.Fatalf("entry 3 = %+v", got[3])
	}
}

func TestEmptyLogVerifies(t *testing.T) {
	dir, signer := writeLog(t, 0, 10)
	rep, err := Verify(dir, signer.Public())
	if err != nil || rep.Entries != 0 || rep.Checkpoints != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "none"), signer.Public()); err != nil {
		t.Fatalf("Verify of a missing log = %v", err)
	}
}

// TestTamperDetected edits a log of 30 entries with signed checkpoints at 10,
// 20 and 30 in every way an attacker with write access (but without the
// checkpoint key) might, and checks that Verify names the problem.
func TestTamperDetected(t *testing.T) {
	type where struct {
		entry      bool // an *EntryError, else a *CheckpointError
		seq        uint64
		checkpoint int
	}
	otherKey := newKey(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   error
		at     where
	}{
		{"edit actor in the middle", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { es[5].Actor = "mallory"; return es })
		}, ErrEdited, where{entry: true, seq: 5}},
		{"edit action in the middle", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { es[12].Action = ReleaseRejected; return es })
		}, ErrEdited, where{entry: true, seq: 12}},
		{"edit time in the middle", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { es[0].Time = es[0].Time.Add(-time.Hour); return es })
		}, ErrEdited, where{entry: true, seq: 0}},
		{"edit the last entry", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { es[29].Actor = "mallory"; return es })
		}, ErrEdited, where{checkpoint: 2}},
		{"edit bytes without reparsing", func(t *testing.T, dir string) {
			path := filepath.Join(dir, LogFile)
			lines := readLines(t, path)
			lines[7] = bytes.Replace(lines[7], []byte("user1"), []byte("user2"), 1)
			writeLines(t, path, lines)
		}, ErrEdited, where{entry: true, seq: 7}},
		{"rewrite consistently from entry 5", func(t *testing.T, dir string) {
			editEntries(t, dir, true, func(es []Entry) []Entry { es[5].Actor = "mallory"; return es })
		}, ErrEdited, where{checkpoint: 0}},
		{"rewrite consistently from entry 25", func(t *testing.T, dir string) {
			editEntries(t, dir, true, func(es []Entry) []Entry { es[25].Release = "acme/router-x1@6.6.6"; return es })
		}, ErrEdited, where{checkpoint: 2}},
		{"insert an entry and rechain", func(t *testing.T, dir string) {
			editEntries(t, dir, true, func(es []Entry) []Entry {
				return slices.Insert(es, 15, Entry{Time: t0, Actor: "alice", Action: ReleaseApproved, Release: "acme/router-x1@6.6.6"})
			})
		}, ErrEdited, where{checkpoint: 1}},
		{"delete an entry in the middle", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { return slices.Delete(es, 5, 6) })
		}, ErrRemoved, where{entry: true, seq: 5}},
		{"delete the first entry", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { return es[1:] })
		}, ErrRemoved, where{entry: true, seq: 0}},
		{"delete the first entry and renumber", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry {
				es = es[1:]
				for i := range es {
					es[i].Seq = uint64(i)
				}
				return es
			})
		}, ErrRemoved, where{entry: true, seq: 0}},
		{"delete the last entries covered by a checkpoint", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { return es[:27] })
		}, ErrRemoved, where{checkpoint: 2}},
		{"swap two entries", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { es[5], es[6] = es[6], es[5]; return es })
		}, ErrReordered, where{entry: true, seq: 5}},
		{"move an entry later", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry {
				e := es[3]
				return slices.Insert(slices.Delete(es, 3, 4), 8, e)
			})
		}, ErrReordered, where{entry: true, seq: 3}},
		{"duplicate an entry", func(t *testing.T, dir string) {
			editEntries(t, dir, false, func(es []Entry) []Entry { return slices.Insert(es, 6, es[5]) })
		}, ErrReordered, where{entry: true, seq: 6}},
		{"garbage line", func(t *testing.T, dir string) {
			path := filepath.Join(dir, LogFile)
			lines := readLines(t, path)
			lines[4] = []byte("{\"seq\":4}\n")
			writeLines(t, path, lines)
		}, ErrMalformed, where{entry: true, seq: 4}},
		{"edit a checkpoint's root", func(t *testing.T, dir string) {
			editCheckpoint(t, dir, 1, func(msg []byte) []byte {
				lines := strings.SplitN(string(msg), "\n", 4)
				lines[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
				return []byte(strings.Join(lines, "\n"))
			})
		}, ErrCheckpointSignature, where{checkpoint: 1}},
		{"edit a checkpoint's size", func(t *testing.T, dir string) {
			editCheckpoint(t, dir, 2, func(msg []byte) []byte { return bytes.Replace(msg, []byte("\n30\n"), []byte("\n3\n"), 1) })
		}, ErrCheckpointSignature, where{checkpoint: 2}},
		{"forge a checkpoint with another key", func(t *testing.T, dir string) {
			editEntries(t, dir, true, func(es []Entry) []Entry {
				es[25].Actor = "mallory"
				editCheckpoint(t, dir, 2, func([]byte) []byte { return signedCheckpoint(t, otherKey, es, 30) })
				return es
			})
		}, ErrCheckpointSignature, where{checkpoint: 2}},
		{"replace the public key file and re-sign everything", func(t *testing.T, dir string) {
			// Verify is given the pinned key, so audit-key.pub does not matter.
			os.Remove(filepath.Join(dir, PublicKeyFile))
			os.Remove(filepath.Join(dir, CheckpointFile))
			editEntries(t, dir, true, func(es []Entry) []Entry {
				es[3].Actor = "mallory"
				path := filepath.Join(dir, CheckpointFile)
				line := encodeLine(signedCheckpoint(t, otherKey, es, 30))
				if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
					t.Fatal(err)
				}
				return es
			})
		}, ErrCheckpointSignature, where{checkpoint: 0}},
		{"swap two checkpoints", func(t *testing.T, dir string) {
			path := filepath.Join(dir, CheckpointFile)
			lines := readLines(t, path)
			lines[0], lines[1] = lines[1], lines[0]
			writeLines(t, path, lines)
		}, ErrCheckpointInconsistent, where{checkpoint: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, signer := writeLog(t, 30, 10)
			tt.tamper(t, dir)
			_, err := Verify(dir, signer.Public())
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			var ee *EntryError
			var ce *CheckpointError
			switch {
			case tt.at.entry && errors.As(err, &ee):
				if ee.Seq != tt.at.seq {
					t.Errorf("error at entry %d, want %d: %v", ee.Seq, tt.at.seq, err)
				}
			case !tt.at.entry && errors.As(err, &ce):
				if ce.Index != tt.at.checkpoint {
					t.Errorf("error at checkpoint %d, want %d: %v", ce.Index, tt.at.checkpoint, err)
				}
			default:
				t.Errorf("error type %T, want entry=%v: %v", err, tt.at.entry, err)
			}
			// Open refuses to append to the tampered log.
			if l, err := Open(dir, signer, Options{}); !errors.Is(err, ErrTampered) {
				if l != nil {
					l.Close()
				}
				t.Errorf("Open = %v, want ErrTampered", err)
			}
		})
	}
}

func encodeLine(msg []byte) string {
	return base64.StdEncoding.EncodeToString(msg) + "\n"
}

// TestExternalCheckpointCatchesTruncation: an attacker who truncates the log
// and drops the newest checkpoints goes unnoticed locally, but not by a
// verifier holding a checkpoint shipped off the box.
func TestExternalCheckpointCatchesTruncation(t *testing.T) {
	dir, signer := writeLog(t, 30, 10)
	lines := readLines(t, filepath.Join(dir, CheckpointFile))
	latest := decodeLine(t, lines[2])

	editEntries(t, dir, false, func(es []Entry) []Entry { return es[:20] })
	writeLines(t, filepath.Join(dir, CheckpointFile), lines[:2])
	if _, err := Verify(dir, signer.Public()); err != nil {
		t.Fatalf("local Verify = %v (the attack is expected to be invisible locally)", err)
	}
	_, err := VerifyWithOptions(dir, signer.Public(), VerifyOptions{External: [][]byte{latest}})
	var ce *CheckpointError
	if !errors.Is(err, ErrRemoved) || !errors.As(err, &ce) || ce.Index != -1 {
		t.Fatalf("Verify with external checkpoint = %v, want ErrRemoved at the external checkpoint", err)
	}

	// A rewritten log of the same length is caught as well.
	dir2, signer2 := writeLog(t, 30, 10)
	latest2 := decodeLine(t, readLines(t, filepath.Join(dir2, CheckpointFile))[2])
	editEntries(t, dir2, true, func(es []Entry) []Entry { es[22].Actor = "mallory"; return es })
	writeLines(t, filepath.Join(dir2, CheckpointFile), readLines(t, filepath.Join(dir2, CheckpointFile))[:2])
	if _, err := VerifyWithOptions(dir2, signer2.Public(), VerifyOptions{External: [][]byte{latest2}}); !errors.Is(err, ErrEdited) {
		t.Fatalf("Verify with external checkpoint = %v, want ErrEdited", err)
	}
	// An external checkpoint signed by another key is rejected.
	if _, err := VerifyWithOptions(dir2, signer.Public(), VerifyOptions{External: [][]byte{latest2}}); !errors.Is(err, ErrCheckpointSignature) {
		t.Fatalf("Verify with foreign checkpoint = %v, want ErrCheckpointSignature", err)
	}
}

func decodeLine(t *testing.T, line []byte) []byte {
	t.Helper()
	msg, err := base64.StdEncoding.DecodeString(string(bytes.TrimSuffix(line, []byte("\n"))))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestCrashTornTail: a crash in the middle of an append leaves a partial
// last line. It is not tampering: Verify reports it and Open sets it aside.
// But if a signed checkpoint covers the entry, it was removed.
func TestCrashTornTail(t *testing.T) {
	dir, signer := writeLog(t, 12, 5) // checkpoints at 5, 10, 12
	path := filepath.Join(dir, LogFile)
	partial := sampleEntry(12)
	partial.Seq = 12
	torn := partial.Encode()[:40]
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn)
	f.Close()

	rep, err := Verify(dir, signer.Public())
	if err != nil {
		t.Fatalf("Verify with torn tail = %v", err)
	}
	if rep.Entries != 12 || rep.TornBytes != int64(len(torn)) {
		t.Fatalf("report = %+v", rep)
	}
	if _, err := Query(dir, Filter{}); err != nil {
		t.Fatalf("Query with torn tail = %v", err)
	}

	l, err := Open(dir, signer, Options{})
	if err != nil {
		t.Fatalf("Open with torn tail = %v", err)
	}
	if seq, err := l.Append(t.Context(), sampleEntry(12)); err != nil || seq != 12 {
		t.Fatalf("Append after recovery = %d, %v", seq, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if saved, _ := os.ReadFile(filepath.Join(dir, TornFile)); !bytes.Equal(saved, torn) {
		t.Fatalf("torn tail saved as %q, want %q", saved, torn)
	}
	if rep, err := Verify(dir, signer.Public()); err != nil || rep.Entries != 13 || rep.TornBytes != 0 {
		t.Fatalf("Verify after recovery = %+v, %v", rep, err)
	}

	// Cutting into the last entry, which the checkpoint at 13 covers, is
	// removal, not a crash.
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, signer.Public()); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Verify = %v, want ErrRemoved", err)
	}
}

func TestCrashTornCheckpoint(t *testing.T) {
	dir, signer := writeLog(t, 12, 5)
	path := filepath.Join(dir, CheckpointFile)
	lines := readLines(t, path)
	lines[len(lines)-1] = lines[len(lines)-1][:30]
	writeLines(t, path, lines)
	rep, err := Verify(dir, signer.Public())
	if err != nil || rep.TornCheckpointBytes != 30 || rep.Checkpoints != 2 || rep.Unsigned != 2 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	l, err := Open(dir, signer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(dir, signer.Public()); err != nil || rep.Checkpoints != 3 || rep.Unsigned != 0 || rep.TornCheckpointBytes != 0 {
		t.Fatalf("Verify after recovery = %+v, %v", rep, err)
	}
}
