package storeurl

import (
	"context"
	"errors"
	"fmt"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/memcachestore"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// Option configures Open.
type Option func(*options)

type options struct {
	prefix    string
	hasPrefix bool
	readOnly  bool
}

// WithReadOnly opens a bbolt URL with boltstore.WithReadOnly: a shared
// lock, nothing created or written, a missing file an error wrapping
// fs.ErrNotExist. It is for programs that only read a store (the msalcache
// command's stats, inspect and doctor). The network stores are opened as
// usual: their clients write only when asked to.
func WithReadOnly() Option {
	return func(o *options) { o.readOnly = true }
}

// WithPrefix sets the key prefix of a Redis or memcached store (the
// stores' WithPrefix; without it their DefaultPrefix). Open fails for a
// bbolt URL given a non-empty prefix: bbolt separates data by bucket
// (?bucket=).
func WithPrefix(p string) Option {
	return func(o *options) { o.prefix, o.hasPrefix = p, true }
}

// Store is an open store and the client under it, for what the
// driver.Store contract does not cover (a Redis INFO, a memcached
// server list).
type Store struct {
	// Store is the msalcache store. Test it for driver.Lister,
	// driver.Lifetimer and the other optional interfaces.
	driver.Store
	// URL is the parsed URL it was opened from.
	URL *URL
	// Redis is the client of the Redis kinds; nil otherwise.
	Redis redis.UniversalClient
	// Memcache is the client of a memcache URL; nil otherwise.
	Memcache *memcache.Client
	// Bolt is the bbolt store of a bbolt URL; nil otherwise.
	Bolt *boltstore.Store
	// Postgres is the pool of a Postgres URL; nil otherwise.
	Postgres *pgxpool.Pool
}

// Close closes the store and the client Open made for it.
func (s *Store) Close() error {
	err := s.Store.Close()
	if s.Redis != nil {
		err = errors.Join(err, s.Redis.Close())
	}
	if s.Memcache != nil {
		err = errors.Join(err, s.Memcache.Close())
	}
	if s.Postgres != nil {
		s.Postgres.Close()
	}
	return err
}

// Open parses raw (see Parse) and opens the store it names. It connects
// lazily, as the clients do, except for bbolt, which opens (and locks, or
// creates, 0600) the file, and PostgreSQL, whose store checks (or
// creates) its table: call Ping to check a server. Errors show the
// URL redacted.
func Open(ctx context.Context, raw string, opts ...Option) (*Store, error) {
	u, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	return u.Open(ctx, opts...)
}

// Open opens the store u names; see the package function Open.
func (u *URL) Open(ctx context.Context, opts ...Option) (*Store, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &Store{URL: u}
	switch u.Kind {
	case Bolt:
		if o.hasPrefix && o.prefix != "" {
			return nil, fmt.Errorf("storeurl: %s: bbolt has no key prefix; separate data by bucket (?bucket=name) or by file", u)
		}
		var bo []boltstore.Option
		if u.Bucket != "" {
			bo = append(bo, boltstore.WithBucket(u.Bucket))
		}
		if u.LockTimeout > 0 {
			bo = append(bo, boltstore.WithLockTimeout(u.LockTimeout))
		}
		if o.readOnly {
			bo = append(bo, boltstore.WithReadOnly())
		}
		s, err := boltstore.Open(u.Path, bo...)
		if err != nil {
			return nil, fmt.Errorf("storeurl: open %s: %w", u, err)
		}
		out.Store, out.Bolt = s, s
	case Redis, RedisCluster, RedisSentinel:
		ro := *u.Redis
		ro.ContextTimeoutEnabled = true
		var c redis.UniversalClient
		switch u.Kind {
		case RedisCluster:
			c = redis.NewClusterClient(ro.Cluster())
		case RedisSentinel:
			c = redis.NewFailoverClient(ro.Failover())
		default:
			c = redis.NewClient(ro.Simple())
		}
		var so []redisstore.Option
		if o.hasPrefix {
			so = append(so, redisstore.WithPrefix(o.prefix))
		}
		out.Store, out.Redis = redisstore.New(c, so...), c
	case Memcache:
		ss := new(memcache.ServerList)
		if err := ss.SetServers(u.Servers...); err != nil {
			return nil, fmt.Errorf("storeurl: %s: %w", u, err)
		}
		c := memcache.NewFromSelector(ss)
		mo := []memcachestore.Option{memcachestore.WithServerList(ss)}
		if o.hasPrefix {
			mo = append(mo, memcachestore.WithPrefix(o.prefix))
		}
		out.Store, out.Memcache = memcachestore.New(c, mo...), c
	case Postgres:
		if err := u.openPostgres(ctx, out, o); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("storeurl: %s: unknown kind %q", u, u.Kind)
	}
	return out, nil
}
