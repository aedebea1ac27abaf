// Package depaware compares a binary's committed dependency list
// (cmd/BINARY/depaware.txt, written by scripts/depaware.sh) with what
// `go list -deps` reports now. The tests of cmd/airlock and
// cmd/airlock-device use it, so a new dependency of a binary (on the device:
// new code on every device) shows up in review as a diff of that file.
package depaware

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RefreshCommand regenerates every list.
const RefreshCommand = "sh scripts/depaware.sh"

// CGO is the CGO_ENABLED setting each binary's list is made with (as in
// scripts/depaware.sh).
var CGO = map[string]string{"airlock": "1", "airlock-device": "0"}

// Tags are the build tags each binary is built with (scripts/build-device.sh
// for the device: nethttpomithttp2, no HTTP/2 in net/http).
var Tags = map[string]string{"airlock": "", "airlock-device": "nethttpomithttp2"}

// List runs go list -deps for binary (from the module root root) with the
// fixed target of scripts/depaware.sh.
func List(root, binary string) ([]string, error) {
	cmd := exec.Command("go", "list", "-tags="+Tags[binary], "-deps", "./cmd/"+binary)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED="+CGO[binary])
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("go list: %w\n%s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("go list: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// Committed reads cmd/BINARY/depaware.txt, without its comment lines.
func Committed(root, binary string) ([]string, error) {
	f, err := os.Open(filepath.Join(root, "cmd", binary, "depaware.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pkgs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			pkgs = append(pkgs, l)
		}
	}
	return pkgs, sc.Err()
}

// Diff returns "" if the committed list of binary matches go list, else the
// packages gained (+) and lost (-) and the refresh command.
func Diff(root, binary string) (string, error) {
	want, err := Committed(root, binary)
	if err != nil {
		return "", err
	}
	got, err := List(root, binary)
	if err != nil {
		return "", err
	}
	return diff(binary, want, got), nil
}

func diff(binary string, want, got []string) string {
	in := func(list []string) map[string]bool {
		m := map[string]bool{}
		for _, p := range list {
			m[p] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, p := range got {
		if !w[p] {
			fmt.Fprintf(&b, "+ %s\n", p)
		}
	}
	for _, p := range want {
		if !g[p] {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return fmt.Sprintf("the dependencies of %s changed (+ gained, - lost) against cmd/%s/depaware.txt:\n%sIf this is intended, refresh the lists with: %s (and review the diff)\n", binary, binary, b.String(), RefreshCommand)
}
