//go:build unix

package testserver

import (
	"os"
	"syscall"
)

var sigInt os.Signal = syscall.SIGINT

// credential makes a process run as uid and gid.
func credential(uid, gid uint32) func(*syscall.SysProcAttr) {
	return func(a *syscall.SysProcAttr) { a.Credential = &syscall.Credential{Uid: uid, Gid: gid} }
}
