package redisstore

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// scanCount is the COUNT hint of each SCAN: large enough that a big keyspace
// takes few round trips, small enough that one SCAN does not stall the
// server.
const scanCount = 1000

// List implements driver.Lister. It runs SCAN over every master (every
// shard of a Ring), one after the other, and calls fn with each key that
// starts with prefix, without the store's own prefix. fn is never called
// concurrently and may call back into the store.
//
// SCAN may return a key twice while Redis resizes its tables; List reports
// each key once, which costs memory for the keys seen so far. Keys created
// or deleted during the walk may or may not be reported.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := s.start(ctx, "list"); err != nil {
		return err
	}
	nodes, err := s.masters(ctx)
	if err != nil {
		return s.wrap(ctx, "list", err)
	}
	match := globEscape(s.prefix+prefix) + "*"
	seen := make(map[string]struct{})
	for _, node := range nodes {
		var cursor uint64
		for {
			var keys []string
			err := s.run(ctx, func(ctx context.Context) error {
				var err error
				keys, cursor, err = node.Scan(ctx, cursor, match, scanCount).Result()
				return err
			})
			if err != nil {
				return s.wrap(ctx, "list", err)
			}
			for _, k := range keys {
				k, ok := strings.CutPrefix(k, s.prefix)
				if !ok || !strings.HasPrefix(k, prefix) {
					continue // MATCH already filters; be strict anyway
				}
				if _, dup := seen[k]; dup {
					continue
				}
				seen[k] = struct{}{}
				if err := ctx.Err(); err != nil {
					return s.wrap(ctx, "list", err)
				}
				if err := fn(k); err != nil {
					return err
				}
			}
			if cursor == 0 {
				break
			}
		}
	}
	return nil
}

// masters returns a client for every node that holds a share of the keys.
func (s *Store) masters(ctx context.Context) ([]redis.Cmdable, error) {
	var (
		mu    sync.Mutex
		nodes []redis.Cmdable
	)
	collect := func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		nodes = append(nodes, c)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := s.c.(type) {
	case *redis.ClusterClient:
		err = s.run(ctx, func(ctx context.Context) error { return c.ForEachMaster(ctx, collect) })
	case *redis.Ring:
		err = s.run(ctx, func(ctx context.Context) error { return c.ForEachShard(ctx, collect) })
	default:
		return []redis.Cmdable{s.c}, nil
	}
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	return nodes, nil
}

// globEscape quotes the characters that SCAN MATCH treats as a pattern.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
