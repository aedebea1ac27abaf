package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestRunRebuildsTheNewImage: create, apply and compare on small images;
// and the comparison fails when the output differs.
func TestRunRebuildsTheNewImage(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	old := make([]byte, 64*4096)
	for i := range old {
		old[i] = "abc\x00"[rng.IntN(4)]
	}
	new := append(bytes.Clone(old[4096:]), old[:5000]...)
	new[100] = 'z'
	oldPath, newPath := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	for p, b := range map[string][]byte{oldPath: old, newPath: new} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := run([]string{"run", oldPath, newPath}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"run", "-nodict", "-window", "8192", oldPath, newPath}); err != nil {
		t.Fatal(err)
	}
	if err := same(oldPath, newPath); err == nil {
		t.Fatal("same accepted two different files")
	}
	if err := run([]string{"create", oldPath}); err == nil {
		t.Fatal("a usage error was accepted")
	}
}
