//go:build !linux

package testserver

import (
	"syscall"
	"time"
)

// sysProcAttr has no parent-death signal outside Linux; servers are still
// stopped by t.Cleanup.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitStopped gives a SIGSTOP a moment to take effect on every thread.
func waitStopped(int) { time.Sleep(20 * time.Millisecond) }
