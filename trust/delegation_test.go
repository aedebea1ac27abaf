package trust

import (
	"context"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/trust/trusttest"
)

// TestDelegationCacheNotReusedAcrossDelegators closes the go-tuf v2.4.2 gap:
// role R is delegated by A (key k1) and by B (key k2) and signed only by k1.
// A target reachable only through B must be refused, also after R was
// verified (and stored) through A.
func TestDelegationCacheNotReusedAcrossDelegators(t *testing.T) {
	for _, tt := range []struct {
		name    string
		lookups []string // lookups before the attack one
	}{
		{"R not yet reached through A", nil},
		{"R already verified through A", []string{"a/fw.img"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, src := newRepo(t)
			kA, kB, k1, k2 := trusttest.NewKey(), trusttest.NewKey(), trusttest.NewKey(), trusttest.NewKey()
			r.Delegate("targets", metadata.DelegatedRole{Name: "A", Paths: []string{"a/*"}}, farFuture, kA)
			r.Delegate("targets", metadata.DelegatedRole{Name: "B", Paths: []string{"b/*"}}, farFuture, kB)
			r.Delegate("A", metadata.DelegatedRole{Name: "R", Paths: []string{"a/*", "b/*"}}, farFuture, k1)
			r.Delegate("B", metadata.DelegatedRole{Name: "R", Paths: []string{"b/*"}}, farFuture, k2)
			r.Signers["R"] = []*trusttest.Key{k1} // B's key k2 never signed R
			r.AddTarget("R", "a/fw.img", []byte("through A"))
			r.AddTarget("R", "b/fw.img", []byte("only B may authorize this"))
			for _, role := range []string{"A", "B", "R"} {
				r.SignRole(role)
			}
			r.BumpTargets("targets")
			r.UpdateSnapshot()

			c, _ := newClient(t, r, src, t0)
			mustRefresh(t, c)
			for _, p := range tt.lookups {
				if _, err := c.Target(context.Background(), p); err != nil {
					t.Fatalf("Target(%q): %v", p, err)
				}
			}
			tf, err := c.Target(context.Background(), "b/fw.img")
			if err == nil {
				t.Fatalf("b/fw.img accepted through B although R lacks B's key: %+v", tf)
			}
			wantErr(t, err, ErrThreshold)
			if _, err := c.Target(context.Background(), "a/fw.img"); err != nil {
				t.Fatalf("a/fw.img through A: %v", err)
			}
		})
	}
}

func TestDelegationPathRestriction(t *testing.T) {
	r, src := newRepo(t)
	k := trusttest.NewKey()
	r.Delegate("targets", metadata.DelegatedRole{Name: "acme", Paths: []string{"acme/*"}}, farFuture, k)
	r.AddTarget("acme", "acme/ok.img", []byte("ok"))
	r.AddTarget("acme", "other/evil.img", []byte("outside acme's paths"))
	r.SignRole("acme")
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	c, _ := newClient(t, r, src, t0)
	mustRefresh(t, c)

	_, err := c.Target(context.Background(), "other/evil.img")
	wantErr(t, err, ErrTargetNotFound)

	if _, err := c.Target(context.Background(), "acme/ok.img"); err != nil {
		t.Fatal(err)
	}
	chain, targets, delegated, err := c.Chain("acme/ok.img")
	if err != nil {
		t.Fatal(err)
	}
	if len(delegated) != 1 || delegated[0].Name != "acme" {
		t.Fatalf("Chain delegated = %v", delegated)
	}
	if _, err := VerifyBootChain(r.RootBytes(1), chain, targets, delegated, "acme/ok.img"); err != nil {
		t.Fatalf("VerifyBootChain acme/ok.img: %v", err)
	}
	// At boot, the same role must not authorize a path outside its pattern.
	_, err = VerifyBootChain(r.RootBytes(1), chain, targets, delegated, "other/evil.img")
	wantErr(t, err, ErrTargetNotFound)
}

func TestDelegationTraversalOrder(t *testing.T) {
	// Pre-order DFS, terminating delegations stop backtracking (5.6.7).
	r, src := newRepo(t)
	keys := map[string]*trusttest.Key{}
	for _, d := range []struct {
		from, to    string
		terminating bool
	}{{"targets", "A", false}, {"targets", "B", false}, {"A", "C", true}, {"A", "D", false}} {
		keys[d.to] = trusttest.NewKey()
		r.Delegate(d.from, metadata.DelegatedRole{Name: d.to, Paths: []string{"*"}, Terminating: d.terminating}, farFuture, keys[d.to])
	}
	r.AddTarget("B", "fw.img", []byte("in B, unreachable past terminating C"))
	for _, role := range []string{"A", "B", "C", "D"} {
		r.SignRole(role)
	}
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	c, _ := newClient(t, r, src, t0)
	mustRefresh(t, c)
	r.ResetRequests()
	_, err := c.Target(context.Background(), "fw.img")
	wantErr(t, err, ErrTargetNotFound)
	var got []string
	for _, p := range r.Requests() {
		got = append(got, p)
	}
	want := []string{"/metadata/1.A.json", "/metadata/1.C.json"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("visited %v, want %v", got, want)
	}
}

func TestBootChainRefusesTamperedTargets(t *testing.T) {
	r, src := newRepo(t)
	r.AddTarget("targets", "fw.img", []byte("x"))
	r.BumpTargets("targets")
	r.UpdateSnapshot()
	c, _ := newClient(t, r, src, t0)
	mustRefresh(t, c)
	if _, err := c.Target(context.Background(), "fw.img"); err != nil {
		t.Fatal(err)
	}
	chain, targets, delegated, err := c.Chain("fw.img")
	if err != nil {
		t.Fatal(err)
	}
	// Boot does not check expiry: metadata expired long ago still boots.
	r.Targets["targets"].Signed.Targets["fw.img"].Length = 2
	forged := trusttest.Sign(r.Targets["targets"].Signed, trusttest.NewKey())
	for name, tg := range map[string][]byte{"genuine": targets, "forged": forged} {
		_, err := VerifyBootChain(r.RootBytes(1), chain, tg, delegated, "fw.img")
		if (err == nil) != (name == "genuine") {
			t.Errorf("%s targets: err = %v", name, err)
		}
	}
}
