package main

import (
	"testing"

	"github.com/airlockfw/airlock/internal/depaware"
)

// TestDependencies fails when airlock gains or loses a dependency against
// the committed cmd/airlock/depaware.txt.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	d, err := depaware.Diff("../..", "airlock")
	if err != nil {
		t.Fatal(err)
	}
	if d != "" {
		t.Fatal(d)
	}
}
