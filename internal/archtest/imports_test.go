package archtest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/airlockfw/airlock"

// rule is one row of the table in docs/packages.md.
type rule struct {
	pattern string   // a package path relative to the module, or "dir/..." for a tree
	allowed []string // patterns of module packages it may import
	line    int
}

func matches(pattern, pkg string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pkg == pattern
}

// readMap parses the rows "| `pkg` | holds | `a`, `b` |" of the first table
// in docs/packages.md whose header starts with "| Package".
func readMap(t *testing.T, path string) []rule {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules []rule
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "| Package"):
			inTable = true
			continue
		case !inTable:
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
			continue
		case strings.HasPrefix(line, "|--") || strings.HasPrefix(line, "| --"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("%s:%d: want 3 cells, got %d", path, n, len(cells))
		}
		r := rule{pattern: strings.Trim(strings.TrimSpace(cells[0]), "`"), line: n}
		for _, a := range strings.Split(cells[2], ",") {
			a = strings.Trim(strings.TrimSpace(a), "`")
			if a != "" && a != "—" && a != "-" {
				r.allowed = append(r.allowed, a)
			}
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no package table found", path)
	}
	return rules
}

// TestImportsFollowThePackageMap fails when a package imports a module
// package that docs/packages.md does not allow, or when a package is
// missing from the map.
func TestImportsFollowThePackageMap(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rules := readMap(t, filepath.Join(root, "docs", "packages.md"))
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	used := map[int]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := rel(f[0])
		var r *rule
		for i := range rules {
			if matches(rules[i].pattern, pkg) {
				r = &rules[i]
				break
			}
		}
		if r == nil {
			t.Errorf("package %s is not in docs/packages.md: add a row saying what it holds and what it may import", pkg)
			continue
		}
		used[r.line] = true
		for _, imp := range f[1:] {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := rel(imp)
			if !slices.ContainsFunc(r.allowed, func(a string) bool { return matches(a, dep) }) {
				t.Errorf("%s imports %s, which docs/packages.md (line %d, row %s) does not allow", pkg, dep, r.line, r.pattern)
			}
		}
	}
	for _, r := range rules {
		if !used[r.line] {
			t.Errorf("docs/packages.md line %d: row %s matches no package", r.line, r.pattern)
		}
	}
}

func rel(p string) string {
	if p == module {
		return "."
	}
	return strings.TrimPrefix(p, module+"/")
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, pkg string
		want         bool
	}{
		{"trust", "trust", true},
		{"trust", "trust/trusttest", false},
		{"server/...", "server", true},
		{"server/...", "server/store", true},
		{"server/...", "serverx", false},
	} {
		if got := matches(c.pattern, c.pkg); got != c.want {
			t.Errorf("matches(%q, %q) = %v", c.pattern, c.pkg, got)
		}
	}
}
