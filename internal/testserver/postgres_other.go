//go:build !unix

package testserver

import (
	"os"
	"syscall"
)

var sigInt os.Signal = os.Interrupt

// credential is unused outside unix, where tests do not run as root.
func credential(uid, gid uint32) func(*syscall.SysProcAttr) { return nil }
