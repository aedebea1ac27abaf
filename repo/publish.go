package repo

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys/tufsign"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/tlog"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// PublishResult says what Publish wrote.
type PublishResult struct {
	RootVersion, TargetsVersion, SnapshotVersion, TimestampVersion int64
	// Roles maps each product role written by this publish to its version.
	Roles map[string]int64
	// Released lists the target paths that became public.
	Released []string
	// Warnings lists published product roles that no longer reach their
	// threshold under the new delegations (for example after a key
	// revocation): devices reject their releases until re-signed.
	Warnings []string
	// Log says what was appended to the transparency log (nil when the
	// root carries no transparency policy).
	Log *LogResult
}

// metaFileFor describes a metadata file in snapshot or timestamp metadata.
func metaFileFor(version int64, data []byte) *metadata.MetaFiles {
	h := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": h[:]}}
}

type pendingWrite struct {
	name string // file name under public/metadata
	data []byte
}

// publish is Publish without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) publish(snapshotSigner, timestampSigner crypto.Signer) (*PublishResult, error) {
	if snapshotSigner == nil || timestampSigner == nil {
		return nil, fmt.Errorf("%w: snapshot and timestamp keys are required", ErrInvalidOptions)
	}
	res := &PublishResult{Roles: map[string]int64{}}
	oldRoot, err := r.PublishedRoot()
	if err != nil {
		return nil, err
	}
	root := oldRoot
	var writes []pendingWrite
	var rootWrite *pendingWrite
	stagedRoot, err := r.stagedRoot()
	if err != nil {
		return nil, err
	}
	if stagedRoot != nil {
		if err := checkRootRotation(oldRoot, stagedRoot); err != nil {
			return nil, err
		}
		data, err := stagedRoot.ToBytes(true)
		if err != nil {
			return nil, err
		}
		root = stagedRoot
		rootWrite = &pendingWrite{fmt.Sprintf("%d.root.json", root.Signed.Version), data}
	}
	res.RootVersion = root.Signed.Version
	now := r.now()
	if root.Signed.IsExpired(now) {
		return nil, fmt.Errorf("%w: root version %d expired at %s; rotate root to renew it", ErrInvalidMetadata, root.Signed.Version, root.Signed.Expires)
	}
	snapKeys, _ := rootRoleKeys(root, metadata.SNAPSHOT)
	if _, err := snapKeys.authorize(snapshotSigner, metadata.SNAPSHOT); err != nil {
		return nil, err
	}
	tsKeys, _ := rootRoleKeys(root, metadata.TIMESTAMP)
	if _, err := tsKeys.authorize(timestampSigner, metadata.TIMESTAMP); err != nil {
		return nil, err
	}

	// Targets.
	targets, tv, err := r.publishedTargetsRole(metadata.TARGETS)
	if err != nil {
		return nil, err
	}
	targetsKeys, _ := rootRoleKeys(root, metadata.TARGETS)
	stagedTargets, err := r.stagedTargetsRole(metadata.TARGETS)
	if err != nil {
		return nil, err
	}
	if stagedTargets != nil {
		if stagedTargets.Signed.Version != tv+1 {
			return nil, fmt.Errorf("%w: staged targets has version %d, want %d", ErrInvalidMetadata, stagedTargets.Signed.Version, tv+1)
		}
		targets = stagedTargets
		data, err := targets.ToBytes(true)
		if err != nil {
			return nil, err
		}
		writes = append(writes, pendingWrite{fmt.Sprintf("%d.targets.json", targets.Signed.Version), data})
	}
	if err := needThreshold(targets, targetsKeys, metadata.TARGETS, fmt.Sprintf("targets version %d", targets.Signed.Version)); err != nil {
		return nil, err
	}
	res.TargetsVersion = targets.Signed.Version

	// Product roles.
	staged, err := r.stagedRoles()
	if err != nil {
		return nil, err
	}
	var moves [][2]string
	var stagedFiles []string
	type toLog struct {
		name string
		md   *metadata.Metadata[metadata.TargetsType]
		data []byte
		rk   roleKeys
	}
	var logRoles []toLog
	for _, name := range staged {
		if name == metadata.ROOT || name == metadata.TARGETS {
			continue
		}
		md, err := r.stagedTargetsRole(name)
		if err != nil {
			return nil, err
		}
		rk, d, ok := delegatedRoleKeys(targets, name)
		if !ok {
			return nil, fmt.Errorf("%w: staged role %q is not delegated by targets version %d", ErrNoDelegation, name, targets.Signed.Version)
		}
		pub, pv, err := r.publishedTargetsRole(name)
		if err != nil {
			return nil, err
		}
		if md.Signed.Version != pv+1 {
			return nil, fmt.Errorf("%w: staged %s has version %d, want %d", ErrInvalidMetadata, name, md.Signed.Version, pv+1)
		}
		var added []string
		for tp, tf := range md.Signed.Targets {
			if okPath, _ := d.IsDelegatedPath(tp); !okPath {
				return nil, fmt.Errorf("%w: target %q is outside the paths delegated to %s", ErrInvalidMetadata, tp, name)
			}
			src, isStaged, err := r.payloadPath(tp, tf)
			if err != nil {
				return nil, err
			}
			if isStaged {
				// A staged payload is the repository's own copy, but
				// staging/ is a plain directory (a hand edit, a damaged
				// disk): make sure it is still exactly what was signed.
				if err := verifyPayloadFile(src, tf); err != nil {
					return nil, err
				}
				rel := strings.TrimPrefix(src, r.path(StagingDir, TargetsDir))
				moves = append(moves, [2]string{src, r.path(PublicDir, TargetsDir) + rel})
			}
			if pub == nil || pub.Signed.Targets[tp] == nil {
				added = append(added, tp)
				if moves, err = r.checkProvenanceAtPublish(tp, tf, moves); err != nil { // repo/provenance.go
					return nil, err
				}
			}
		}
		sort.Strings(added)
		what := fmt.Sprintf("role %s version %d", name, md.Signed.Version)
		if len(added) > 0 {
			var rels []string
			for _, tp := range added {
				if p, v, _, err := release.ParseTargetPath(tp); err == nil {
					rels = append(rels, p.String()+" "+v.String())
				}
			}
			what = "release " + strings.Join(rels, ", ")
		}
		if err := needThreshold(md, rk, name, what); err != nil {
			return nil, err
		}
		data, err := md.ToBytes(true)
		if err != nil {
			return nil, err
		}
		writes = append(writes, pendingWrite{fmt.Sprintf("%d.%s.json", md.Signed.Version, name), data})
		logRoles = append(logRoles, toLog{name, md, data, rk})
		res.Roles[name] = md.Signed.Version
		res.Released = append(res.Released, added...)
		stagedFiles = append(stagedFiles, r.stagedPath(name))
	}
	// Warn about published roles the new delegations no longer verify.
	if targets.Signed.Delegations != nil {
		for _, d := range targets.Signed.Delegations.Roles {
			if _, done := res.Roles[d.Name]; done {
				continue
			}
			pub, _, err := r.publishedTargetsRole(d.Name)
			if err != nil || pub == nil {
				continue
			}
			rk, _, _ := delegatedRoleKeys(targets, d.Name)
			if have, _ := countValid(pub, rk); have < rk.threshold {
				res.Warnings = append(res.Warnings, fmt.Sprintf("role %s version %d has %d of %d valid signatures: devices reject its releases until it is re-signed ('airlock release sign')", d.Name, pub.Signed.Version, have, rk.threshold))
			}
		}
	}

	// Snapshot: start from the previous one (a snapshot must never drop a
	// role a client has seen), then update what changed.
	prevSnap, err := r.PublishedSnapshot()
	if err != nil {
		return nil, err
	}
	snap := metadata.Snapshot(now.Add(time.Duration(r.cfg.Expires.Snapshot)))
	snap.Signed.Version = prevSnap.Signed.Version + 1
	snap.Signed.Meta = map[string]*metadata.MetaFiles{}
	for k, v := range prevSnap.Signed.Meta {
		snap.Signed.Meta[k] = &metadata.MetaFiles{Version: v.Version}
	}
	snap.Signed.Meta["targets.json"] = &metadata.MetaFiles{Version: targets.Signed.Version}
	for name, v := range res.Roles {
		snap.Signed.Meta[name+".json"] = &metadata.MetaFiles{Version: v}
	}
	if err := tufsign.Sign(snap, snapshotSigner); err != nil {
		return nil, err
	}
	snapData, err := snap.ToBytes(true)
	if err != nil {
		return nil, err
	}
	writes = append(writes, pendingWrite{fmt.Sprintf("%d.snapshot.json", snap.Signed.Version), snapData})
	res.SnapshotVersion = snap.Signed.Version

	prevTS, err := r.PublishedTimestamp()
	if err != nil {
		return nil, err
	}
	ts := metadata.Timestamp(now.Add(time.Duration(r.cfg.Expires.Timestamp)))
	ts.Signed.Version = prevTS.Signed.Version + 1
	ts.Signed.Meta["snapshot.json"] = metaFileFor(snap.Signed.Version, snapData)
	if err := tufsign.Sign(ts, timestampSigner); err != nil {
		return nil, err
	}
	tsData, err := ts.ToBytes(true)
	if err != nil {
		return nil, err
	}
	res.TimestampVersion = ts.Signed.Version

	// Transparency: every release that becomes installable is logged, and
	// a checkpoint covering it published, before anything else is written
	// (a client never sees a release that is not logged). When this root
	// enables the log, the releases already published are logged too.
	policy, logged, err := RootPolicy(root)
	if err != nil {
		return nil, err
	}
	if logged && !r.opts.ExternalLog {
		if _, had, err := RootPolicy(oldRoot); err != nil {
			return nil, err
		} else if !had && targets.Signed.Delegations != nil {
			for _, d := range targets.Signed.Delegations.Roles {
				if _, done := res.Roles[d.Name]; done {
					continue
				}
				pub, _, err := r.publishedTargetsRole(d.Name)
				if err != nil {
					return nil, err
				}
				if pub == nil {
					continue
				}
				data, err := pub.ToBytes(true)
				if err != nil {
					return nil, err
				}
				rk, _, _ := delegatedRoleKeys(targets, d.Name)
				logRoles = append(logRoles, toLog{d.Name, pub, data, rk})
			}
		}
		entries := map[string]tlog.Entry{}
		for _, lr := range logRoles {
			es, err := r.logEntries(lr.name, lr.md, lr.data, lr.rk, now)
			if err != nil {
				return nil, err
			}
			maps.Copy(entries, es)
		}
		if res.Log, err = r.appendLog(ctxTODO(), policy, entries); err != nil {
			return nil, err
		}
	}

	// Everything checked: write.
	for _, m := range moves {
		if err := durable.Rename(fsys, m[0], m[1], DirMode); err != nil {
			return nil, err
		}
	}
	for _, w := range writes {
		if err := writeFile(r.metaPath(w.name), w.data); err != nil {
			return nil, err
		}
	}
	if rootWrite != nil {
		if err := writeFile(r.metaPath(rootWrite.name), rootWrite.data); err != nil {
			return nil, err
		}
		if err := writeFile(r.metaPath("root.json"), rootWrite.data); err != nil {
			return nil, err
		}
		stagedFiles = append(stagedFiles, r.stagedPath(metadata.ROOT))
	}
	if err := writeFile(r.metaPath("timestamp.json"), tsData); err != nil {
		return nil, err
	}
	if stagedTargets != nil {
		stagedFiles = append(stagedFiles, r.stagedPath(metadata.TARGETS))
	}
	for _, f := range stagedFiles {
		if err := durable.Remove(fsys, f); err != nil {
			return nil, err
		}
	}
	sort.Strings(res.Released)
	return res, nil
}

// timestamp is Timestamp without the repository lock, the environment rule and the
// audit entry.
func (r *Repo) timestamp(signer crypto.Signer) (int64, error) {
	root, err := r.PublishedRoot()
	if err != nil {
		return 0, err
	}
	rk, _ := rootRoleKeys(root, metadata.TIMESTAMP)
	if _, err := rk.authorize(signer, metadata.TIMESTAMP); err != nil {
		return 0, err
	}
	ts, err := r.PublishedTimestamp()
	if err != nil {
		return 0, err
	}
	ts.Signed.Version++
	ts.Signed.Expires = r.now().Add(time.Duration(r.cfg.Expires.Timestamp))
	ts.ClearSignatures()
	if err := tufsign.Sign(ts, signer); err != nil {
		return 0, err
	}
	data, err := ts.ToBytes(true)
	if err != nil {
		return 0, err
	}
	if err := writeFile(r.metaPath("timestamp.json"), data); err != nil {
		return 0, err
	}
	return ts.Signed.Version, nil
}

// checkRootRotation checks a new root against the previous one: the next
// version, signed by a threshold of the old root keys and of its own root
// keys (TUF 1.0 §5.3.4).
func checkRootRotation(old, next *metadata.Metadata[metadata.RootType]) error {
	if next.Signed.Version != old.Signed.Version+1 {
		return fmt.Errorf("%w: staged root has version %d, want %d", ErrInvalidMetadata, next.Signed.Version, old.Signed.Version+1)
	}
	what := fmt.Sprintf("root version %d", next.Signed.Version)
	if err := needThreshold(next, rootKeysOf(old), metadata.ROOT, what+" (by the keys of root version "+fmt.Sprint(old.Signed.Version)+")"); err != nil {
		return err
	}
	return needThreshold(next, rootKeysOf(next), metadata.ROOT, what+" (by its own root keys)")
}

var _ = os.Remove

// verifyPayloadFile streams the file at path and checks it against the
// length and SHA-256 of its signed target.
func verifyPayloadFile(path string, tf *metadata.TargetFiles) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open staged payload: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(onlyWriter{h}, onlyReader{io.LimitReader(f, tf.Length+1)}, make([]byte, CopyBufferSize))
	if err != nil {
		return fmt.Errorf("failed to read staged payload: %w", err)
	}
	if n != tf.Length || !bytes.Equal(h.Sum(nil), tf.Hashes["sha256"]) {
		return fmt.Errorf("%w: staged payload %s no longer matches its signed length and hash (was the image file modified after release add?)", ErrMismatch, path)
	}
	return nil
}
