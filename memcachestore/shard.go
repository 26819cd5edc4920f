package memcachestore

import "github.com/msalcache/msalcache"

var _ driver.Sharded = (*Store)(nil)

// Shard implements driver.Sharded on a Store built WithServerList: it
// names the server gomemcache picks for key, so that the Adapter's breaker
// treats each server apart and one dead server of several costs only its
// own keys. Without the server list it cannot tell, and returns "": the
// whole store is then one shard, and one dead server keeps the breaker
// open for every key until it is back.
func (s *Store) Shard(key string) string {
	if s.servers == nil {
		return ""
	}
	ikey, err := s.itemKey(key)
	if err != nil {
		return ""
	}
	addr, err := s.servers.PickServer(ikey)
	if err != nil {
		return ""
	}
	return addr.String()
}
