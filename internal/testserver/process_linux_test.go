//go:build linux

package testserver_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testserver"
)

// TestHelperServers is not a test: TestServersDieWithTestBinary runs it in a
// child test binary, which starts servers, prints their pids and hangs.
func TestHelperServers(t *testing.T) {
	if os.Getenv("TESTSERVER_HELPER") != "1" {
		t.Skip("helper for TestServersDieWithTestBinary")
	}
	r := testserver.Redis(t)
	m := testserver.Memcached(t)
	fmt.Printf("PIDS %d %d\n", r.PID(), m.PID())
	time.Sleep(time.Minute)
}

// TestServersDieWithTestBinary kills (SIGKILL, so no cleanup runs) a test
// binary that started servers, and checks that the servers die with it.
func TestServersDieWithTestBinary(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServers$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TESTSERVER_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pids [2]int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "PIDS ") {
			if _, err := fmt.Sscanf(sc.Text(), "PIDS %d %d", &pids[0], &pids[1]); err != nil {
				t.Fatal(err)
			}
			break
		}
		t.Log(sc.Text())
	}
	if pids[0] == 0 {
		t.Fatalf("helper printed no pids (%v)", sc.Err())
	}
	for _, pid := range pids {
		if !running(pid) {
			t.Fatalf("server pid %d not running under the helper", pid)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for running(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("server pid %d outlived its test binary", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// running reports whether pid exists and is not a zombie (an orphan may
// wait for its reaper a while after it died).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestNothingLeftBehind checks that the cleanup of a (sub)test leaves no
// server process behind, frozen ones included.
func TestNothingLeftBehind(t *testing.T) {
	t.Parallel()
	var pids []int
	t.Run("servers", func(t *testing.T) {
		r := testserver.Redis(t)
		m := testserver.Memcached(t)
		k := testserver.Redis(t)
		killed := k.PID()
		k.Kill()
		if alive(killed) {
			t.Errorf("pid %d alive after Kill", killed)
		}
		m.Freeze() // cleanup must stop a frozen server too
		pids = append(pids, r.PID(), m.PID())
		for _, pid := range pids {
			if !alive(pid) {
				t.Fatalf("pid %d not running during the test", pid)
			}
		}
	})
	if len(pids) != 2 {
		t.Fatal("subtest did not run")
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still alive after cleanup", pid)
		}
	}
}

// alive reports whether a process with the pid exists, zombies included:
// a server the cleanup stopped must also have been reaped.
func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
