package redisstore

import (
	"context"
	"fmt"

	"github.com/msalcache/msalcache"
	"github.com/redis/go-redis/v9"
)

// PutRaw is the conformance suite's Capabilities.PutRaw for this store: it
// SETs raw as the whole value of key, past the record format, on whatever
// deployment the store's client reaches (single node, Sentinel, Cluster).
func PutRaw(ctx context.Context, s driver.Store, key string, raw []byte) error {
	rs, ok := s.(*Store)
	if !ok {
		return fmt.Errorf("PutRaw: %T is not a *redisstore.Store", s)
	}
	return rs.c.Set(ctx, rs.prefix+key, raw, 0).Err()
}

// CorruptRecords are values of this store's layout that it cannot decode:
// the conformance suite's Capabilities.CorruptRecords. The layout's only
// header is the 8-byte version, so a header of the right length is wrong
// only when it holds version 0; keys of other Redis types are planted by
// TestMalformedRecord.
var CorruptRecords = map[string][]byte{
	"zero-version":            make([]byte, headerSize),
	"zero-version-with-value": append(make([]byte, headerSize), `{"AccessToken":{"k":{"secret":"at"}}}`...),
	"7-bytes":                 []byte("secret!"),
}

// WatchBarrier returns once the Watch callbacks in progress on s have
// returned: a test that saw one watcher told of a change knows, after it,
// that every watcher of s was.
func WatchBarrier(s *Store) {
	s.watch.mu.Lock()
	//lint:ignore SA2001 waiting for the lock is the point
	s.watch.mu.Unlock()
}

// Prefix returns the prefix s was built with, so that a test can open a
// second handle on the same keys.
func Prefix(s driver.Store) string { return s.(*Store).prefix }

// Client returns the client s was built on.
func Client(s driver.Store) redis.UniversalClient { return s.(*Store).c }

// Channel returns the channel s publishes its changes on.
func Channel(s *Store) string { return s.channel }
