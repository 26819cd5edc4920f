//go:build linux

package testserver

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel kill the server when the test binary dies, so
// no server outlives `go test`, even when the binary is killed before its
// cleanups run. (Pdeathsig fires when the thread that started the child
// exits; Go only ends threads that a goroutine locked and never unlocked, so
// do not start servers from such a goroutine.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until every thread of pid is stopped. kill(2) returns
// before a SIGSTOP has taken effect: each thread stops itself when next
// scheduled, so for a moment a thread can still answer a request.
func waitStopped(pid int) {
	deadline := time.Now().Add(time.Second)
	for !allStopped(pid) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return true // gone: nothing left to answer
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // thread gone
		}
		// The state follows the command name, which is in parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return false
		}
		if st := s[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}
