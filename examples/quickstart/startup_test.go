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
// its cause on stderr and a non-zero exit, never a panic. The quickstart
// uses no Redis: its other start-up errors are the cache's folder and
// file.
func TestStartupFailsCleanly(t *testing.T) {
	t.Run("taken port", func(t *testing.T) {
		taken := exampletest.TakenPort(t)
		exampletest.RunMain(t, "-dir", filepath.Join(t.TempDir(), "qs"), "-addr", taken).
			FailsCleanly(t, "quickstart: start the Entra ID emulator on "+taken, "pass -addr with a free port")
	})
	t.Run("folder is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		exampletest.RunMain(t, "-dir", file, "-addr", exampletest.ClosedPort(t)).FailsCleanly(t, "quickstart: ", file)
	})
	t.Run("key file too open", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "master.key"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		exampletest.RunMain(t, "-dir", dir, "-addr", exampletest.ClosedPort(t)).FailsCleanly(t, "quickstart: ", "chmod 600")
	})
}
