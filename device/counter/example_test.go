package counter_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/device/counter"
	"github.com/airlockfw/airlock/internal/durable"
)

func ExampleOpenFile() {
	dir, err := os.MkdirTemp("", "counter-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	c, err := counter.OpenFile(durable.OS, filepath.Join(dir, "security-version"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Raise(3))
	err = c.Raise(2)
	fmt.Println(errors.Is(err, counter.ErrDecrease))
	v, _ := c.Read()
	fmt.Println(v)
	// Output:
	// <nil>
	// true
	// 3
}
