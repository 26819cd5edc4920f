package driver

import (
	"context"
	"errors"
	"time"
)

// NoExpiry is the lifetime Lifetimer reports for a key stored without a
// TTL. It is negative, so passing it on to Store.Save as the ttl stores the
// key without expiry again.
const NoExpiry time.Duration = -1

// Lifetimer is implemented by stores that can tell how long a key has
// left before it expires, so that operator tooling copies a key to
// another store, or rewrites it, without giving it a new lifetime (a
// copy through Load and Save alone would make every key live forever, or
// as long as the copier guesses). memstore, boltstore and redisstore
// implement it exactly (Redis to the millisecond, PTTL); memcachestore
// implements it to the second, through memcached's meta protocol, when it
// was built with the server list it talks to (see
// memcachestore.WithServerList).
type Lifetimer interface {
	// Lifetime returns key's remaining lifetime: a positive duration,
	// NoExpiry for a key stored without a TTL, or an error wrapping
	// ErrNotFound when the key is absent or expired. A key about to
	// expire reports at least the store's smallest unit (a millisecond,
	// or a second), never zero.
	Lifetime(ctx context.Context, key string) (time.Duration, error)
}

// Sharded is implemented by stores that spread keys over servers that fail
// on their own (memcachestore with several servers and WithServerList).
// The breaker then tracks each server apart, so that one dead server of
// several costs only the keys it holds.
type Sharded interface {
	// Shard names the server that holds key: any string, the same for
	// every key of that server, "" when the store cannot tell.
	Shard(key string) string
}

// SystemNamer is implemented by stores that name the kind of server they
// keep data in, for Event.Store and the db.system.name of metrics and
// traces. Every store of this module does.
type SystemNamer interface {
	SystemName() string
}

// ErrWatchDenied reports that a store refused the watch an L1 needs (see
// Watcher and WithL1) for lack of permission: on Redis, a user whose ACL
// does not allow SUBSCRIBE, or not on the store's change channel. The
// store does not retry; the Adapter logs one warning naming the missing
// permission, reports it in Stats.L1WatchDenied and as an Event (Op
// OpInvalidation, Outcome OutcomeError, Reason ReasonWatchDenied), and
// goes on without the L1: every call reads the store, as without WithL1.
// Grant the permission and restart the process to have the L1 back.
var ErrWatchDenied = errors.New("msalcache: the store refused the L1's watch for lack of permission")
