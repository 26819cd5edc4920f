package benchmarks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/redisstore"
)

// rawSize is the size of the value the raw cases read: about one user's
// MSAL cache (access, refresh and ID token, account).
const rawSize = 4 << 10

// rawKey holds the raw cases' value. No partition key can collide with it:
// MSAL's are "uid.utid" and the Adapter's start with "tc/".
const rawKey = "bench:raw"

// backend is one store, opened once by a parent benchmark for all of its
// sub-benchmarks.
type backend struct {
	// raw reads the rawSize value once with the store's own client.
	raw func(ctx context.Context) error
	// naive is the hand-written accessor over the same client.
	naive cache.ExportReplace
	// store is the driver.Store for the Adapter.
	store driver.Store
	// ring encrypts for adapter-encrypted.
	ring driver.Protector
}

// backends lists the stores in the order of the table. open starts the
// store's server (if any) on the parent benchmark's b, so it outlives
// every sub-benchmark and stops when the parent ends.
var backends = []struct {
	name string
	open func(b *testing.B) *backend
}{
	{"redis", openRedis},
	{"memcached", openMemcached},
	{"bbolt", openBolt},
	{"memstore", openMemstore},
	{"postgres", openPostgres},
}

func openRedis(b *testing.B) *backend {
	srv := testserver.Redis(b)
	// ContextTimeoutEnabled, as redisstore's docs advise: the deadline
	// goes on the socket instead of a goroutine watching ctx.
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	b.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, rawKey, rawValue(), 0).Err(); err != nil {
		b.Fatal(err)
	}
	store := redisstore.New(c)
	b.Cleanup(func() { store.Close() })
	return &backend{
		raw: func(ctx context.Context) error {
			v, err := c.Get(ctx, rawKey).Bytes()
			return checkRaw(v, err)
		},
		naive: naiveRedis{c},
		store: store,
		ring:  newRing(b, store),
	}
}

func openMemcached(b *testing.B) *backend {
	srv := testserver.Memcached(b)
	c := memcache.New(srv.Addr())
	c.Timeout = time.Second
	c.MaxIdleConns = 4
	b.Cleanup(func() { c.Close() })
	if err := c.Set(&memcache.Item{Key: rawKey, Value: rawValue()}); err != nil {
		b.Fatal(err)
	}
	store := memcachestore.New(c)
	b.Cleanup(func() { store.Close() })
	// memcached may evict the ring with the tokens; protect refuses it
	// (ErrVolatileStore), so the ring lives in memory, as it would in a
	// durable store next to the cache in production.
	ringStore := memstore.New()
	b.Cleanup(func() { ringStore.Close() })
	return &backend{
		raw: func(context.Context) error {
			it, err := c.Get(rawKey)
			if err != nil {
				return err
			}
			return checkRaw(it.Value, nil)
		},
		naive: naiveMemcached{c},
		store: store,
		ring:  newRing(b, ringStore),
	}
}

func openBolt(b *testing.B) *backend {
	dir := b.TempDir()
	// The naive accessor and the raw read use a bbolt file of their own:
	// bbolt locks a file for one opener, and boltstore holds the other.
	db, err := bolt.Open(filepath.Join(dir, "naive.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(naiveBucket)
		if err != nil {
			return err
		}
		return bk.Put([]byte(rawKey), rawValue())
	})
	if err != nil {
		b.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(dir, "msalcache.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	return &backend{
		raw: func(context.Context) error {
			return db.View(func(tx *bolt.Tx) error {
				return checkRaw(tx.Bucket(naiveBucket).Get([]byte(rawKey)), nil)
			})
		},
		naive: naiveBolt{db},
		store: store,
		ring:  newRing(b, store),
	}
}

func openMemstore(b *testing.B) *backend {
	store := memstore.New()
	b.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if _, err := store.Save(ctx, rawKey, rawValue(), driver.NoVersion, 0); err != nil {
		b.Fatal(err)
	}
	return &backend{
		raw: func(ctx context.Context) error {
			v, _, err := store.Load(ctx, rawKey)
			return checkRaw(v, err)
		},
		naive: naiveMemstore{store},
		store: store,
		ring:  newRing(b, store),
	}
}

func rawValue() []byte { return bytes.Repeat([]byte{'x'}, rawSize) }

func checkRaw(v []byte, err error) error {
	if err == nil && len(v) != rawSize {
		err = fmt.Errorf("raw read returned %d bytes, want %d", len(v), rawSize)
	}
	return err
}

// newRing opens a key ring kept in store, with a random KEK, closed when
// the benchmark ends.
func newRing(b *testing.B, store driver.Store) *protect.KeyRing {
	kek := make([]byte, 32)
	rand.Read(kek)
	w, err := protect.NewAESKeyWrapper("bench", kek)
	if err != nil {
		b.Fatal(err)
	}
	ring, err := protect.NewKeyRing(context.Background(), store, w)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ring.Close() })
	return ring
}

var namespaces atomic.Int64

// newAdapter builds an Adapter over store, encrypting with p unless it is
// nil. Each gets a namespace of its own, so every invocation of a
// benchmark starts from an empty partition.
func newAdapter(b *testing.B, store driver.Store, p driver.Protector, extra ...msalcache.Option) *msalcache.Adapter {
	opts := []msalcache.Option{msalcache.WithNamespace(fmt.Sprintf("bench%d", namespaces.Add(1)))}
	if p != nil {
		opts = append(opts, msalcache.WithProtector(p))
	} else {
		opts = append(opts, msalcache.WithPlaintext())
	}
	a, err := msalcache.New(store, append(opts, extra...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a
}

// The naive accessors below are what applications write today when they
// give MSAL-Go an external cache: load the partition and hand it to MSAL,
// marshal MSAL's cache and store it, under the partition key as is. No
// compare-and-set, no encryption, no expiry, and nothing skipped when MSAL
// already holds what is stored.

// emptyCache resets MSAL's cache on a miss, which is the one thing naive
// accessors that work get right (DESIGN 4.1).
var emptyCache = []byte("{}")

type naiveRedis struct{ c *redis.Client }

func (n naiveRedis) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	data, err := n.c.Get(ctx, h.PartitionKey).Bytes()
	if errors.Is(err, redis.Nil) {
		data, err = emptyCache, nil
	}
	if err != nil {
		return err
	}
	return u.Unmarshal(data)
}

func (n naiveRedis) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return n.c.Set(ctx, h.PartitionKey, data, 0).Err()
}

type naiveMemcached struct{ c *memcache.Client }

func (n naiveMemcached) Replace(_ context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	data := emptyCache
	it, err := n.c.Get(h.PartitionKey)
	switch {
	case err == nil:
		data = it.Value
	case !errors.Is(err, memcache.ErrCacheMiss):
		return err
	}
	return u.Unmarshal(data)
}

func (n naiveMemcached) Export(_ context.Context, m cache.Marshaler, h cache.ExportHints) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return n.c.Set(&memcache.Item{Key: h.PartitionKey, Value: data})
}

var naiveBucket = []byte("tokens")

type naiveBolt struct{ db *bolt.DB }

func (n naiveBolt) Replace(_ context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	data := emptyCache
	err := n.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(naiveBucket).Get([]byte(h.PartitionKey)); v != nil {
			data = bytes.Clone(v) // v lives only as long as tx
		}
		return nil
	})
	if err != nil {
		return err
	}
	return u.Unmarshal(data)
}

func (n naiveBolt) Export(_ context.Context, m cache.Marshaler, h cache.ExportHints) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	return n.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(naiveBucket).Put([]byte(h.PartitionKey), data)
	})
}

// naiveMemstore has no client beneath the Store, so it goes through the
// Store itself: Load, and Save over whatever version is there.
type naiveMemstore struct{ s *memstore.Store }

func (n naiveMemstore) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	data, _, err := n.s.Load(ctx, h.PartitionKey)
	if errors.Is(err, driver.ErrNotFound) {
		data, err = emptyCache, nil
	}
	if err != nil {
		return err
	}
	return u.Unmarshal(data)
}

func (n naiveMemstore) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	_, v, err := n.s.Load(ctx, h.PartitionKey)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return err
	}
	_, err = n.s.Save(ctx, h.PartitionKey, data, v, 0)
	return err
}
