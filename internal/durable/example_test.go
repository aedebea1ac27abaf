package durable_test

import (
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/internal/durable"
)

// Power-cut testing: count the write boundaries of an operation, then cut
// power at each one, reboot, and check the invariant.
func ExampleMem() {
	setup := func() *durable.Mem {
		m := durable.NewMem()
		m.MkdirAll("/state", 0o700)
		m.WriteFileRaw("/state/slot", []byte("old"), 0o600)
		return m
	}
	m := setup()
	m.CutAfter(0)
	durable.WriteFile(m, "/state/slot", []byte("new"), 0o600)
	n := m.Ops()
	for cut := 1; cut <= n; cut++ {
		m := setup()
		m.CutAfter(cut)
		err := durable.WriteFile(m, "/state/slot", []byte("new"), 0o600)
		m.Crash() // power loss and reboot
		got, _ := durable.ReadFile(m, "/state/slot", 16)
		fmt.Println(cut, errors.Is(err, durable.ErrPowerCut), string(got))
	}
	// A cut even at the last op (the directory fsync) keeps the old
	// content: WriteFile had not returned success, so nothing was promised.

	// Output:
	// 1 true old
	// 2 true old
	// 3 true old
	// 4 true old
	// 5 true old
}
