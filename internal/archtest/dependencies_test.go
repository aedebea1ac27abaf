package archtest

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// TestDependenciesDocumented checks that the table of direct dependencies in
// docs/dependencies.md lists exactly the direct requirements of go.mod, so
// that every module Airlock requires has a reviewed line saying why.
func TestDependenciesDocumented(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	var required []string
	for _, r := range mf.Require {
		if !r.Indirect {
			required = append(required, r.Mod.Path)
		}
	}
	documented := readDependencyTable(t, "../../docs/dependencies.md")
	if len(required) == 0 || len(documented) == 0 {
		t.Fatalf("found %d direct requirements in go.mod and %d rows in docs/dependencies.md", len(required), len(documented))
	}
	for _, m := range required {
		if !slices.Contains(documented, m) {
			t.Errorf("go.mod requires %s directly, but docs/dependencies.md does not list it: add a row saying where and why it is used", m)
		}
	}
	for _, m := range documented {
		if !slices.Contains(required, m) {
			t.Errorf("docs/dependencies.md lists %s, which is not a direct requirement in go.mod: remove its row", m)
		}
	}
}

// readDependencyTable returns the module paths in the first cell of the rows
// "| `module` | used by | why |" of the table whose header starts with
// "| module"; a module listed twice is an error.
func readDependencyTable(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "| module"):
			inTable = true
		case !inTable || strings.HasPrefix(line, "|---"):
		case !strings.HasPrefix(line, "|"):
			if len(mods) > 0 {
				return mods
			}
		default:
			cells := strings.Split(line, "|")
			m, ok := strings.CutPrefix(strings.TrimSpace(cells[1]), "`")
			m, ok2 := strings.CutSuffix(m, "`")
			if !ok || !ok2 || m == "" || strings.ContainsAny(m, "` ") {
				t.Errorf("%s:%d: the first cell is not one `module/path`: %q", path, n, cells[1])
				continue
			}
			if slices.Contains(mods, m) {
				t.Errorf("%s:%d: %s is listed twice", path, n, m)
			}
			mods = append(mods, m)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return mods
}
