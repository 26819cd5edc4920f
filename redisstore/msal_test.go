package redisstore_test

import (
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testring"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// runMSAL runs the MSAL suite over c, once on plaintext and once encrypted
// by a key ring that lives in the very store it protects: Redis is durable
// enough for the ring (see the package's Durability section), and keeping
// both in one database is how a farm deploys it. Every subtest gets a prefix
// of its own, so subtests sharing one server start empty. The suite's
// load subtests measure the Adapter, not the store nor its deployment:
// they run once, over memstore, in the root package.
func runMSAL(t *testing.T, c redis.UniversalClient) {
	newStore := func(t *testing.T) driver.Store {
		return redisstore.New(c, redisstore.WithPrefix(freshPrefix()))
	}
	t.Run("Plain", func(t *testing.T) {
		conformance.RunMSALTests(t, conformance.MSALSetup{NewStore: newStore,
			PutRaw: redisstore.PutRaw, Damaged: redisstore.CorruptRecords, SkipLoadTests: true})
	})
	t.Run("Encrypted", func(t *testing.T) {
		conformance.RunMSALTests(t, conformance.MSALSetup{
			NewStore:      newStore,
			NewProtector:  testring.New,
			PutRaw:        redisstore.PutRaw,
			Damaged:       redisstore.CorruptRecords,
			SkipLoadTests: true,
		})
	})
}

func TestMSALSingle(t *testing.T) {
	t.Parallel()
	srv := testserver.Redis(t)
	runMSAL(t, newClient(t, &redis.Options{Addr: srv.Addr()}))
}

func TestMSALCluster(t *testing.T) {
	t.Parallel()
	runMSAL(t, newClusterClient(t, testserver.RedisCluster(t, 3)))
}

func TestMSALSentinel(t *testing.T) {
	t.Parallel()
	runMSAL(t, newFailoverClient(t, testserver.RedisSentinel(t)))
}
