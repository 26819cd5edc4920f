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
// its cause on stderr and a non-zero exit, never a panic (Start's
// deferred Close once dereferenced the nil Farm its named result had
// become).
func TestStartupFailsCleanly(t *testing.T) {
	kek := filepath.Join(t.TempDir(), "kek")
	taken := exampletest.TakenPort(t)
	t.Run("taken port", func(t *testing.T) {
		exampletest.RunMain(t, "-addr", taken).FailsCleanly(t, "surveys: listen on "+taken, "choose another with -addr")
	})
	t.Run("taken metrics port", func(t *testing.T) {
		exampletest.RunMain(t, "-addr", "127.0.0.1:0", "-metrics", taken).FailsCleanly(t, "surveys: ", taken)
	})
	t.Run("unreachable redis", func(t *testing.T) {
		addr := exampletest.ClosedPort(t)
		exampletest.RunMain(t, "-addr", "127.0.0.1:0", "-redis", "redis://"+addr+"/0", "-kek-file", kek).
			FailsCleanly(t, "surveys: ", "redis at "+addr, "connection refused")
	})
	t.Run("bad redis url", func(t *testing.T) {
		exampletest.RunMain(t, "-addr", "127.0.0.1:0", "-redis", "http://x", "-kek-file", kek).FailsCleanly(t, "surveys: -redis")
	})
	t.Run("bolt in a missing directory", func(t *testing.T) {
		exampletest.RunMain(t, "-addr", "127.0.0.1:0", "-bolt", filepath.Join(t.TempDir(), "no", "such", "tokens.db")).
			FailsCleanly(t, "surveys: ", "no such file or directory")
	})
}
