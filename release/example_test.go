package release_test

import (
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/release"
)

// A device parses the verified target's custom field, binds it to the
// target path, and runs the policy before it downloads the payload.
func Example() {
	custom := []byte(`{"airlock":{
		"schema": 1,
		"product": "acme/router-x1",
		"models": ["x1"],
		"hw_rev": ">=2 <4",
		"version": "1.1.0",
		"security_version": 2,
		"install": {"kind": "raw", "compression": "zstd"},
		"installed": {"length": 16777216, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
	}}`)
	m, err := release.ParseCustom(custom)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := release.CheckTargetPath(m, "acme/router-x1/1.1.0/firmware.img.zst"); err != nil {
		fmt.Println(err)
		return
	}

	current := release.MustParseVersion("1.0.0")
	device := release.Device{
		Model:           "x1",
		HWRev:           3,
		Product:         "acme/router-x1",
		Current:         &current,
		SecurityCounter: 2,
	}
	fmt.Println("x1:", release.Check(m, device, release.CheckOptions{}))

	device.Model = "x2"
	err = release.Check(m, device, release.CheckOptions{})
	fmt.Println("x2:", err)
	fmt.Println("wrong model:", errors.Is(err, release.ErrModel))
	// Output:
	// x1: <nil>
	// x2: policy check "model" failed: release is for models ["x1"], device is "x2"
	// wrong model: true
}

func ExampleProduct() {
	p, err := release.ParseProduct("acme/router-x1")
	if err != nil {
		panic(err)
	}
	path, _ := release.TargetPath(p, release.MustParseVersion("1.1.0"), "firmware.img")
	fmt.Println(p.RoleName())
	fmt.Println(p.PathPattern())
	fmt.Println(path)
	// Output:
	// acme.router-x1
	// acme/router-x1/*/*
	// acme/router-x1/1.1.0/firmware.img
}

func ExampleCompare() {
	a := release.MustParseVersion("1.0.0-rc.2")
	b := release.MustParseVersion("1.0.0")
	fmt.Println(release.Compare(a, b))
	// Output: -1
}

func ExampleParseHWRange() {
	r, err := release.ParseHWRange(">=2 <4 !=3")
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Contains(2), r.Contains(3), r.Contains(4))
	// Output: true false false
}
