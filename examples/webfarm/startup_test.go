package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/msalcache/msalcache/examples/internal/exampletest"
)

func TestMain(m *testing.M) {
	exampletest.AsMain(main)
	os.Exit(m.Run())
}

// TestStartupFailsCleanly: every start-up error ends the program with
// its cause on stderr and a non-zero exit, never a panic.
func TestStartupFailsCleanly(t *testing.T) {
	kek := filepath.Join(t.TempDir(), "kek")
	t.Run("taken metrics port", func(t *testing.T) {
		taken := exampletest.TakenPort(t)
		exampletest.RunMain(t, "-metrics", taken, "-kek-file", kek).FailsCleanly(t, "webfarm: ", taken)
	})
	t.Run("unreachable redis", func(t *testing.T) {
		addr := exampletest.ClosedPort(t)
		exampletest.RunMain(t, "-redis", addr, "-kek-file", kek).FailsCleanly(t, "webfarm: redis at "+addr, "connection refused")
	})
	t.Run("no redis-server", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		exampletest.RunMain(t, "-kek-file", kek).FailsCleanly(t, "webfarm: ", "redis-server is not in $PATH", "-redis host:port")
	})
	t.Run("key file in a missing directory", func(t *testing.T) {
		exampletest.RunMain(t, "-kek-file", filepath.Join(t.TempDir(), "no", "kek")).FailsCleanly(t, "webfarm: ", "no such file or directory")
	})
}
