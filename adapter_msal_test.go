package msalcache_test

import (
	"context"
	"testing"

	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/memstore"
)

// memHarness makes the memstores the MSAL suite runs on.
type memHarness struct{}

func newMemHarness(context.Context, *testing.T) (conformance.Harness, error) {
	return memHarness{}, nil
}

// MakeStore implements conformance.Harness.
func (memHarness) MakeStore(context.Context, *testing.T) (driver.Store, error) {
	return memstore.New(), nil
}

// Close implements conformance.Harness.
func (memHarness) Close() {}

func TestMSALConformanceMemstore(t *testing.T) {
	conformance.RunMSALTests(t, newMemHarness, conformance.MSALSetup{})
}

// The suite's load subtests run once, here on plaintext: they measure the
// Adapter's retries and lending, not the store nor encryption.
func TestMSALConformanceMemstoreEncrypted(t *testing.T) {
	conformance.RunMSALTests(t, newMemHarness, conformance.MSALSetup{NewProtector: testring.New, SkipLoadTests: true})
}
