package msalcache_test

import (
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/memstore"
)

func newMemstore(t *testing.T) msalcache.Store {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMSALConformanceMemstore(t *testing.T) {
	conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newMemstore})
}

func TestMSALConformanceMemstoreEncrypted(t *testing.T) {
	conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newMemstore, NewProtector: testring.New})
}
