//go:build unix

package pgtest

import (
	"os/exec"
	"syscall"
)

func setCredential(cmd *exec.Cmd, c *runAs) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)},
	}
}
