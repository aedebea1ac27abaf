package server

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/airlockfw/airlock"

// goList runs go list with args in dir and returns its output lines.
func goList(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command")
		}
	}
	cmd := exec.Command(goBin, append([]string{"list"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %q: %v", args, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestNoSubPackageImportsTheServer keeps the server's rooms layered: a
// package under server/ may import the store and the small shared
// internals, but never package server itself, nor any package that imports
// it (no upward imports, directly or through another sub-package).
func TestNoSubPackageImportsTheServer(t *testing.T) {
	const root = modulePath + "/server"
	imports := map[string][]string{}
	for _, line := range goList(t, ".", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...") {
		f := strings.Fields(line)
		imports[f[0]] = f[1:]
	}
	if len(imports) < 5 {
		t.Fatalf("go list found only %d packages under server/", len(imports))
	}
	// reachesServer memoizes whether a package imports root, directly or
	// through packages under server/.
	memo := map[string]bool{}
	var reachesServer func(pkg string, path []string) []string
	reachesServer = func(pkg string, path []string) []string {
		for _, imp := range imports[pkg] {
			if imp == root {
				return append(path, imp)
			}
			if _, ok := imports[imp]; !ok || slices.Contains(path, imp) {
				continue
			}
			if done, ok := memo[imp]; ok && !done {
				continue
			}
			if chain := reachesServer(imp, append(path, imp)); chain != nil {
				return chain
			}
			memo[imp] = false
		}
		return nil
	}
	for pkg := range imports {
		if pkg == root {
			continue
		}
		if chain := reachesServer(pkg, []string{pkg}); chain != nil {
			t.Errorf("%s imports the server package: %s", pkg, strings.Join(chain, " -> "))
		}
	}
}

// TestAdminAPIClientCarriesNoServerCode: the admin API client is imported
// by the CLI and the benchmarks; it must not pull in the server, the store
// or a database driver.
func TestAdminAPIClientCarriesNoServerCode(t *testing.T) {
	for _, dep := range goList(t, ".", "-deps", modulePath+"/adminapi") {
		if strings.HasPrefix(dep, modulePath+"/server") || strings.Contains(dep, "sqlite") || strings.Contains(dep, "pgx") || dep == "database/sql" {
			t.Errorf("adminapi depends on %s", dep)
		}
	}
}
