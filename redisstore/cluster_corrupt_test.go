package redisstore_test

import (
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
)

// TestClusterCorrupt runs the store suite with raw values on a 3-master
// cluster: the compare-and-set script that replaces a corrupt value must
// stay a one-key script. (TestCluster runs the suite without
// Capabilities.PutRaw, so its CorruptRecord subtest skips; TestMSALCluster
// checks the end-to-end repair.)
func TestClusterCorrupt(t *testing.T) {
	t.Parallel()
	c := newClusterClient(t, testserver.RedisCluster(t, 3))
	conformance.RunStoreTests(t, func(t *testing.T) driver.Store {
		return redisstore.New(c, redisstore.WithPrefix(freshPrefix()), redisstore.WithMaxValueSize(smallMax))
	}, withRaw(conformance.Capabilities{MaxValueSize: smallMax}))
}
