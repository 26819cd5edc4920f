package boltstore_test

import (
	"testing"

	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testring"
)

// The suite's load subtests measure the Adapter, not the store: they run
// once, over memstore, in the root package.

func TestMSALConformance(t *testing.T) {
	conformance.RunMSALTests(t, newHarness, conformance.MSALSetup{SkipLoadTests: true})
}

func TestMSALConformanceEncrypted(t *testing.T) {
	conformance.RunMSALTests(t, newHarness, conformance.MSALSetup{NewProtector: testring.New, SkipLoadTests: true})
}
