package strictoml

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type cfg struct {
		Name string `toml:"name"`
	}
	var c cfg
	if err := Decode([]byte(`name = "x"`), 100, "MaxSize", &c); err != nil || c.Name != "x" {
		t.Fatalf("valid: %v %+v", err, c)
	}
	for in, want := range map[string]string{
		`nmae = "x"`:             `unknown keys ["nmae"]`,
		`name = `:                "expected",
		strings.Repeat("#", 101): "the limit is MaxSize 100",
	} {
		if err := Decode([]byte(in), 100, "MaxSize", &c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.20q: err = %v, want %q", in, err, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`name = "x"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c struct {
			Name string `toml:"name"`
		}
		Decode(data, 1<<10, "MaxSize", &c)
	})
}
