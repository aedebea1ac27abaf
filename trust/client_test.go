package trust

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/trust/trusttest"
)

func TestRefreshAndDownloadOverHTTP(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		t.Run(map[bool]string{true: "consistent snapshot", false: "no consistent snapshot"}[consistent], func(t *testing.T) {
			r, src := newRepo(t)
			r.Root.Signed.ConsistentSnapshot = consistent
			r.Root.Signed.Version = 2
			r.PublishRoot()
			prod := trusttest.NewKey()
			r.AddTarget("targets", "top.bin", []byte("top level"))
			r.Delegate("targets", metadata.DelegatedRole{Name: "acme/router-x1", Paths: []string{"acme/router-x1/*"}}, farFuture, prod)
			r.AddTarget("acme/router-x1", "acme/router-x1/fw-1.0.img", []byte("firmware image 1.0"))
			r.BumpTargets("targets")
			r.SignRole("acme/router-x1")
			r.UpdateSnapshot()

			c, store := newClient(t, r, src, t0)
			mustRefresh(t, c)
			for path, want := range map[string]string{"top.bin": "top level", "acme/router-x1/fw-1.0.img": "firmware image 1.0"} {
				got, err := download(t, c, path)
				if err != nil {
					t.Fatalf("download %s: %v", path, err)
				}
				if string(got) != want {
					t.Fatalf("download %s = %q, want %q", path, got, want)
				}
			}
			for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "acme%2Frouter-x1.json"} {
				stored(t, store, name)
			}
			tr := c.Trusted()
			if tr.Root.Signed.Version != 2 || tr.Targets.Signed.Version != 2 || tr.Delegated("acme/router-x1") == nil {
				t.Fatalf("Trusted() = root v%d targets v%d, delegated %v", tr.Root.Signed.Version, tr.Targets.Signed.Version, tr.DelegatedNames())
			}
			if consistent {
				for _, p := range r.Requests() {
					if strings.Contains(p, "/targets/acme/router-x1/fw") && !strings.Contains(p, trusttest.SHA256([]byte("firmware image 1.0"))) {
						t.Errorf("consistent snapshot target fetched without hash prefix: %s", p)
					}
				}
			}
		})
	}
}

func TestRefreshRejectsUnknownKeySignature(t *testing.T) {
	r, src := newRepo(t)
	c, store := newClient(t, r, src, t0)
	mustRefresh(t, c)
	r.Signers["timestamp"] = []*trusttest.Key{trusttest.NewKey()} // attacker key, not in root
	r.UpdateTimestamp()
	wantErr(t, c.Refresh(context.Background()), ErrThreshold)
	if v := c.Trusted().Timestamp; v != nil {
		t.Fatalf("timestamp signed by unknown key became trusted: v%d", v.Signed.Version)
	}
	if !bytes.Equal(stored(t, store, "timestamp.json"), r.File("1.timestamp.json")) {
		t.Fatal("store no longer holds timestamp v1")
	}
}

func TestRefreshRejectsBelowThreshold(t *testing.T) {
	for _, role := range []string{"timestamp", "snapshot", "targets"} {
		t.Run(role, func(t *testing.T) {
			r, src := newRepo(t)
			k2 := trusttest.NewKey()
			if err := r.Root.Signed.AddKey(k2.Public, role); err != nil {
				t.Fatal(err)
			}
			r.Root.Signed.Roles[role].Threshold = 2
			r.Root.Signed.Version = 2
			r.PublishRoot()
			r.BumpTargets("targets")
			r.UpdateSnapshot() // all signed by one key only
			c, _ := newClient(t, r, src, t0)
			wantErr(t, c.Refresh(context.Background()), ErrThreshold)

			// The same public key under a second key ID counts once.
			k1 := r.Signers[role][0]
			alias := &trusttest.Key{Public: k1.Public, ID: "alias-of-" + k1.ID}
			trusttest.SetPrivate(alias, k1)
			r.Root.Signed.Keys[alias.ID] = k1.Public
			r.Root.Signed.Roles[role].KeyIDs = append(r.Root.Signed.Roles[role].KeyIDs, alias.ID)
			r.Root.Signed.Version = 3
			r.PublishRoot()
			r.Signers[role] = []*trusttest.Key{k1, alias}
			r.BumpTargets("targets")
			r.UpdateSnapshot()
			wantErr(t, c.Refresh(context.Background()), ErrThreshold)

			r.Signers[role] = []*trusttest.Key{k1, k2}
			r.BumpTargets("targets")
			r.UpdateSnapshot()
			mustRefresh(t, c)
		})
	}
}

func TestRefreshRejectsExpired(t *testing.T) {
	tests := []struct {
		role   string
		expire func(r *trusttest.Repo)
	}{
		{"root", func(r *trusttest.Repo) {
			r.Root.Signed.Expires = t0.Add(-1)
			r.Root.Signed.Version = 2
			r.PublishRoot()
		}},
		{"timestamp", func(r *trusttest.Repo) { r.Timestamp.Signed.Expires = t0.Add(-1); r.UpdateTimestamp() }},
		{"snapshot", func(r *trusttest.Repo) { r.Snapshot.Signed.Expires = t0.Add(-1); r.UpdateSnapshot() }},
		{"targets", func(r *trusttest.Repo) {
			r.Targets["targets"].Signed.Expires = t0.Add(-1)
			r.BumpTargets("targets")
			r.UpdateSnapshot()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			r, src := newRepo(t)
			tt.expire(r)
			c, _ := newClient(t, r, src, t0)
			err := c.Refresh(context.Background())
			wantErr(t, err, ErrExpired)
			if !strings.Contains(err.Error(), tt.role) {
				t.Fatalf("error %q does not name role %s", err, tt.role)
			}
		})
	}
}

func TestRefreshRejectsFreezeAttack(t *testing.T) {
	// The repository (or a mirror) keeps serving the same validly signed
	// timestamp after it expired: the device must notice it is frozen.
	r, src := newRepo(t)
	r.Timestamp.Signed.Expires = t0.AddDate(0, 0, 1)
	r.UpdateTimestamp()
	c, store := newClient(t, r, src, t0)
	mustRefresh(t, c)
	c = reopen(t, store, src, t0.AddDate(0, 0, 2))
	wantErr(t, c.Refresh(context.Background()), ErrExpired)
}

func TestRefreshRejectsRollback(t *testing.T) {
	tests := []struct {
		name   string
		attack func(r *trusttest.Repo)
	}{
		{"timestamp version", func(r *trusttest.Repo) {
			r.SetFile("timestamp.json", r.File("2.timestamp.json"))
		}},
		{"snapshot version pinned by timestamp", func(r *trusttest.Repo) {
			r.Timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
			r.Timestamp.Signed.Version++
			r.SignRole("timestamp")
		}},
		{"targets version listed in snapshot", func(r *trusttest.Repo) {
			r.Targets["targets"].Signed.Version = 1
			r.SignRole("targets")
			r.UpdateSnapshot()
		}},
		{"root version", func(r *trusttest.Repo) {
			// 4.root.json serves the validly signed root version 2.
			r.SetRoot(4, r.RootBytes(2))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, src := newRepo(t)
			// Trusted state: timestamp v3, snapshot v3, targets v2, root v3.
			r.Root.Signed.Version = 2
			r.PublishRoot()
			r.Root.Signed.Version = 3
			r.PublishRoot()
			r.BumpTargets("targets")
			r.UpdateSnapshot()
			r.UpdateSnapshot()
			c, _ := newClient(t, r, src, t0)
			mustRefresh(t, c)
			tt.attack(r)
			wantErr(t, c.Refresh(context.Background()), ErrRollback)
		})
	}
}

func TestRefreshRejectsMixAndMatch(t *testing.T) {
	t.Run("targets version differs from snapshot", func(t *testing.T) {
		r, src := newRepo(t)
		r.Root.Signed.ConsistentSnapshot = false
		r.Root.Signed.Version = 2
		r.PublishRoot()
		r.BumpTargets("targets")
		r.UpdateSnapshot()
		r.SetFile("targets.json", r.File("1.targets.json")) // old targets, valid signature
		c, _ := newClient(t, r, src, t0)
		wantErr(t, c.Refresh(context.Background()), ErrMixAndMatch)
	})
	t.Run("snapshot version differs from timestamp", func(t *testing.T) {
		r, src := newRepo(t)
		r.UpdateSnapshot()
		r.SetFile("2.snapshot.json", r.File("1.snapshot.json"))
		c, _ := newClient(t, r, src, t0)
		wantErr(t, c.Refresh(context.Background()), ErrMixAndMatch)
	})
	t.Run("snapshot hash differs from timestamp", func(t *testing.T) {
		r, src := newRepo(t)
		r.UpdateSnapshot()
		snap := r.File("2.snapshot.json")
		mf := metadata.MetaFile(2)
		mf.Length = int64(len(snap))
		mf.Hashes = metadata.Hashes{"sha256": bytes.Repeat([]byte{1}, 32)}
		r.Timestamp.Signed.Meta["snapshot.json"] = mf
		r.Timestamp.Signed.Version++
		r.SignRole("timestamp")
		c, _ := newClient(t, r, src, t0)
		wantErr(t, c.Refresh(context.Background()), ErrHash)
	})
}

func TestRefreshRejectsEndlessMetadata(t *testing.T) {
	r, src := newRepo(t)
	big := append([]byte(`{"signed":{"_type":"timestamp","pad":"`), bytes.Repeat([]byte("A"), MaxTimestampSize)...)
	r.SetFile("timestamp.json", append(big, `"},"signatures":[]}`...))
	c, _ := newClient(t, r, src, t0)
	wantErr(t, c.Refresh(context.Background()), ErrTooLarge)
}

func TestDownloadRejectsTamperedTargets(t *testing.T) {
	content := []byte("firmware image")
	tests := []struct {
		name   string
		served []byte
		want   error
	}{
		{"longer than declared (endless data)", append(append([]byte{}, content...), bytes.Repeat([]byte("X"), 1<<20)...), ErrLength},
		{"shorter than declared", content[:5], ErrLength},
		{"wrong hash", []byte("firmware IMAGE"), ErrHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, src := newRepo(t)
			r.AddTarget("targets", "fw.img", content)
			r.BumpTargets("targets")
			r.UpdateSnapshot()
			r.SetTarget("fw.img", tt.served)
			c, _ := newClient(t, r, src, t0)
			mustRefresh(t, c)
			tf, err := c.Target(context.Background(), "fw.img")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			n, err := c.Download(context.Background(), tf, &buf)
			wantErr(t, err, tt.want)
			if n > tf.Length || int64(buf.Len()) > tf.Length {
				t.Fatalf("wrote %d bytes (%d reported), more than the declared %d", buf.Len(), n, tf.Length)
			}
		})
	}
	t.Run("no supported hash algorithm", func(t *testing.T) {
		r, src := newRepo(t)
		c, _ := newClient(t, r, src, t0)
		mustRefresh(t, c)
		tf := &TargetFiles{Path: "fw.img", Length: 1, Hashes: Hashes{"md5": make([]byte, 16)}}
		_, err := c.Download(context.Background(), tf, &bytes.Buffer{})
		wantErr(t, err, ErrUnsupportedHash)
	})
}

func TestRootRotationChainFollowed(t *testing.T) {
	r, src := newRepo(t)
	prev := r.Signers["root"]
	for v := int64(2); v <= 3; v++ { // v1 -> v2 -> v3, new root key each time
		k := trusttest.NewKey()
		r.Root.Signed.Roles["root"].KeyIDs = []string{k.ID}
		r.Root.Signed.Keys[k.ID] = k.Public
		r.Root.Signed.Version = v
		r.Signers["root"] = []*trusttest.Key{k}
		r.PublishRoot(prev...)
		prev = r.Signers["root"]
	}
	c, store := newClient(t, r, src, t0)
	mustRefresh(t, c)
	if v := c.Trusted().Root.Signed.Version; v != 3 {
		t.Fatalf("root version %d after refresh, want 3", v)
	}
	if !bytes.Equal(stored(t, store, "root.json"), r.RootBytes(3)) {
		t.Fatal("root.json is not root v3")
	}
	if _, err := c.Target(context.Background(), "missing"); err == nil {
		t.Fatal("found missing target")
	}
	r.AddTarget("targets", "fw.img", []byte("x"))
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	mustRefresh(t, c)
	if _, err := c.Target(context.Background(), "fw.img"); err != nil {
		t.Fatal(err)
	}
	chain, targets, delegated, err := c.Chain("fw.img")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !bytes.Equal(chain[0], r.RootBytes(2)) || !bytes.Equal(chain[1], r.RootBytes(3)) {
		t.Fatalf("Chain returned %d roots, want v2, v3", len(chain))
	}
	tf, err := VerifyBootChain(r.RootBytes(1), chain, targets, delegated, "fw.img")
	if err != nil {
		t.Fatalf("VerifyBootChain: %v", err)
	}
	if tf.Length != 1 {
		t.Fatalf("boot chain target length %d", tf.Length)
	}
}

func TestRootRotationRequiresOldAndNewThreshold(t *testing.T) {
	for _, tt := range []struct {
		name          string
		signOld, sign bool
	}{
		{"signed only by new keys", false, true},
		{"signed only by old keys", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, src := newRepo(t)
			old := r.Signers["root"][0]
			k := trusttest.NewKey()
			r.Root.Signed.Roles["root"].KeyIDs = []string{k.ID}
			r.Root.Signed.Keys[k.ID] = k.Public
			r.Root.Signed.Version = 2
			var signers []*trusttest.Key
			if tt.signOld {
				signers = append(signers, old)
			}
			if tt.sign {
				signers = append(signers, k)
			}
			r.Signers["root"] = signers
			r.PublishRoot()
			c, store := newClient(t, r, src, t0)
			wantErr(t, c.Refresh(context.Background()), ErrThreshold)
			if !bytes.Equal(stored(t, store, "root.json"), r.RootBytes(1)) {
				t.Fatal("half-signed root replaced the trusted root")
			}
		})
	}
}

func TestRollbackRefusedAfterRestart(t *testing.T) {
	r, src := newRepo(t)
	r.UpdateSnapshot()
	r.UpdateSnapshot() // timestamp v3
	c, store := newClient(t, r, src, t0)
	mustRefresh(t, c)
	// Power cycle: a new client over the same directory, attacker replays v2.
	r.SetFile("timestamp.json", r.File("2.timestamp.json"))
	c2 := reopen(t, store, src, t0)
	wantErr(t, c2.Refresh(context.Background()), ErrRollback)
	if v := c2.Trusted().Timestamp; v != nil {
		t.Fatalf("replayed timestamp trusted: v%d", v.Signed.Version)
	}
}

func TestNewRefusesUnverifiableTrustedRoot(t *testing.T) {
	r, src := newRepo(t)
	store := NewMemStore()
	bad := bytes.Replace(r.RootBytes(1), []byte(`"version":1`), []byte(`"version":7`), 1)
	if err := store.Put("root.json", bad); err != nil {
		t.Fatal(err)
	}
	_, err := New(store, src, Config{})
	wantErr(t, err, ErrThreshold)
	if n := len(r.Requests()); n != 0 {
		t.Fatalf("New made %d requests", n)
	}
}

func TestRefreshRejectsUnsupportedSpecVersion(t *testing.T) {
	r, src := newRepo(t)
	r.Timestamp.Signed.SpecVersion = "2.0.0"
	r.UpdateTimestamp()
	c, _ := newClient(t, r, src, t0)
	wantErr(t, c.Refresh(context.Background()), ErrMalformed)
}

func TestTargetRequiresRefresh(t *testing.T) {
	r, src := newRepo(t)
	c, _ := newClient(t, r, src, t0)
	_, err := c.Target(context.Background(), "x")
	wantErr(t, err, ErrNotRefreshed)
}
