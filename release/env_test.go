package release

import (
	"errors"
	"testing"
)

func TestEnvironmentPolicy(t *testing.T) {
	m := validMetadata()
	m.Environment = EnvDev
	d := Device{Model: m.Models[0], Product: m.Product.String(), Environment: EnvProd}
	if m.HWRev.IsAny() == false {
		for r := uint32(0); r < 64; r++ {
			if m.HWRev.Contains(r) {
				d.HWRev = r
				break
			}
		}
	}
	err := Check(m, d, CheckOptions{})
	var pe *PolicyError
	if !errors.Is(err, ErrEnvironment) || !errors.As(err, &pe) || pe.Check != CheckEnvironment {
		t.Fatalf("dev release on a prod device: err = %v, want the environment check", err)
	}
	// Round trip keeps the environment; an unknown one is invalid.
	m.Environment = EnvProd
	raw, err := MarshalCustom(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCustom(raw)
	if err != nil || back.Environment != EnvProd {
		t.Fatalf("round trip: %v %q", err, back.Environment)
	}
	m.Environment = "production"
	if _, err := MarshalCustom(m); !errors.Is(err, ErrInvalidMetadata) {
		t.Fatalf("unknown environment accepted: %v", err)
	}
}
