package msalcache_test

import (
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/memstore"
)

func newMemstore(t *testing.T) driver.Store {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMSALConformanceMemstore(t *testing.T) {
	conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newMemstore})
}

// The suite's load subtests run once, here on plaintext: they measure the
// Adapter's retries and lending, not the store nor encryption.
func TestMSALConformanceMemstoreEncrypted(t *testing.T) {
	conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newMemstore, NewProtector: testring.New, SkipLoadTests: true})
}
