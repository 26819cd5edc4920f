package boltstore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/msalcache/msalcache/boltstore"
)

// Opening a file that already has its bucket, and closing it without a
// write, leaves its bytes as they were: a command that opens the store
// and then fails (a wrong KEK, say) changes nothing.
func TestOpenWithoutWritesLeavesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("opening and closing the store changed the file")
	}
}
