//go:build !unix

package pgtest

import "os/exec"

func setCredential(*exec.Cmd, *runAs) {}
