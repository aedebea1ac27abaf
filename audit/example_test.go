package audit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/audit"
)

// A server records events and a reviewer verifies the log with the pinned
// public key, then asks who approved a release.
func Example() {
	tmp, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(tmp)
	signer, err := audit.GenerateKey(filepath.Join(tmp, "audit-key.pem")) // keep it apart from the log, or in an HSM
	if err != nil {
		log.Fatal(err)
	}
	dir := filepath.Join(tmp, "audit")
	l, err := audit.Open(dir, signer, audit.Options{CheckpointEvery: 100})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	l.Append(ctx, audit.Entry{Actor: "alice", Action: audit.ReleaseApproved, Release: "acme/router-x1@2.0.0"})
	l.Append(ctx, audit.Entry{Actor: "dev-1", Action: audit.DeviceUpdated, Release: "acme/router-x1@2.0.0", Device: "dev-1"})
	if err := l.Close(); err != nil { // signs a final checkpoint
		log.Fatal(err)
	}

	pub, _ := audit.LoadPublic(filepath.Join(tmp, "audit-key.pem.pub"))
	rep, err := audit.Verify(dir, pub)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("entries:", rep.Entries, "checkpoints:", rep.Checkpoints)

	es, _ := audit.Query(dir, audit.Filter{Release: "acme/router-x1@2.0.0", Action: audit.ReleaseApproved})
	for _, e := range es {
		fmt.Println(e.Action, "by", e.Actor)
	}
	// Output:
	// entries: 2 checkpoints: 1
	// release.approved by alice
}
