package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testring"
)

func newMSALStore(t *testing.T) driver.Store {
	s := open(t, filepath.Join(t.TempDir(), "tokens.db"))
	t.Cleanup(func() { s.Close() })
	return s
}

// The suite's load subtests measure the Adapter, not the store: they run
// once, over memstore, in the root package.

func TestMSALConformance(t *testing.T) {
	conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newMSALStore,
		PutRaw: boltstore.PutRaw, Damaged: boltstore.CorruptRecords, SkipLoadTests: true})
}

func TestMSALConformanceEncrypted(t *testing.T) {
	conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newMSALStore, NewProtector: testring.New,
		PutRaw: boltstore.PutRaw, Damaged: boltstore.CorruptRecords, SkipLoadTests: true})
}
