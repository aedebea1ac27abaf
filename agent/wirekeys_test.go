package agent

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestWireKeysInStrictomlDifferential: every key of agent.toml is in the
// copy of the wire types that internal/strictoml's differential test
// decodes with both parsers (it cannot import this package).
func TestWireKeysInStrictomlDifferential(t *testing.T) {
	src, err := os.ReadFile("../internal/strictoml/differential_test.go")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[wireConfig]()
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("toml")
		if !strings.Contains(string(src), "`toml:\""+tag+"\"`") {
			t.Errorf("wireConfig.%s (toml %q) is missing from internal/strictoml/differential_test.go", typ.Field(i).Name, tag)
		}
	}
}
