package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	atlog "github.com/airlockfw/airlock/tlog"
	"golang.org/x/mod/sumdb/tlog"
)

// Limits of an add-checkpoint request.
const (
	// MaxProofHashes bounds the consistency proof: RFC 6962 proofs
	// between trees of fewer than 2^64 leaves have fewer hashes.
	MaxProofHashes = 64
	// MaxRequestSize bounds the request body: the old-size line, the
	// proof lines and a checkpoint of at most tlog.MaxCheckpointSize.
	MaxRequestSize = len("old 18446744073709551615\n") + MaxProofHashes*(hashLineLen+1) + 1 + atlog.MaxCheckpointSize
)

// hashLineLen is the length of one base64 proof hash (32 bytes).
const hashLineLen = 44

// ErrRequest is wrapped by every request parse error.
var ErrRequest = errors.New("witness: malformed add-checkpoint request")

// Request is an add-checkpoint request body (C2SP tlog-witness): the size
// of the checkpoint the log believes the witness holds, a consistency
// proof from it, and the new checkpoint note.
type Request struct {
	OldSize    uint64
	Proof      []tlog.Hash
	Checkpoint []byte
}

// ParseRequest parses a request body strictly: "old <decimal>\n" (no
// leading zeros), at most MaxProofHashes lines of one base64 32-byte hash
// each, an empty line, then a non-empty checkpoint note.
func ParseRequest(b []byte) (*Request, error) {
	if len(b) > MaxRequestSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrRequest, len(b), MaxRequestSize)
	}
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("old ")) {
		return nil, fmt.Errorf("%w: the first line is not \"old <size>\"", ErrRequest)
	}
	num := string(line[len("old "):])
	size, err := strconv.ParseUint(num, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != num {
		return nil, fmt.Errorf("%w: old size %q is not a canonical decimal", ErrRequest, num)
	}
	r := &Request{OldSize: size}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, fmt.Errorf("%w: no empty line before the checkpoint", ErrRequest)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofHashes {
			return nil, fmt.Errorf("%w: more than %d proof hashes", ErrRequest, MaxProofHashes)
		}
		var h tlog.Hash
		if len(line) != hashLineLen {
			return nil, fmt.Errorf("%w: proof line %d is not one base64 hash", ErrRequest, len(r.Proof)+1)
		}
		var buf [tlog.HashSize + 1]byte // Decode needs DecodedLen(44) = 33
		if n, err := base64.StdEncoding.Strict().Decode(buf[:], line); err != nil || n != tlog.HashSize {
			return nil, fmt.Errorf("%w: proof line %d is not one base64 hash", ErrRequest, len(r.Proof)+1)
		}
		copy(h[:], buf[:])
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint", ErrRequest)
	}
	if len(rest) > atlog.MaxCheckpointSize {
		return nil, fmt.Errorf("%w: checkpoint of %d bytes, more than %d", ErrRequest, len(rest), atlog.MaxCheckpointSize)
	}
	r.Checkpoint = bytes.Clone(rest)
	return r, nil
}

// Marshal encodes the request as ParseRequest reads it.
func (r *Request) Marshal() []byte {
	b := fmt.Appendf(nil, "old %d\n", r.OldSize)
	for _, h := range r.Proof {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...)
}
