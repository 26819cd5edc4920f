package msalcache

import (
	"context"
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
