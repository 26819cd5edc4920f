package memcachestore

import (
	"context"
	"fmt"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
)

// PutRaw is the conformance suite's Capabilities.PutRaw for this store: it
// sets raw as the value of key's item, with the store's flags, past the
// record format. Items with other flags are planted by TestForeignItem,
// since raw bytes cannot carry flags.
func PutRaw(ctx context.Context, s driver.Store, key string, raw []byte) error {
	ms, ok := s.(*Store)
	if !ok {
		return fmt.Errorf("PutRaw: %T is not a *memcachestore.Store", s)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ikey, err := ms.itemKey(key)
	if err != nil {
		return err
	}
	return ms.c.Set(&memcache.Item{Key: ikey, Value: raw, Flags: recordFlags})
}

// CorruptRecords are item values of this store's layout that it cannot
// decode: the conformance suite's Capabilities.CorruptRecords. The layout's
// only in-value header is the version, so a header of the right length is
// wrong only when it holds version 0.
var CorruptRecords = map[string][]byte{
	"zero-version":            make([]byte, 8),
	"zero-version-with-value": append(make([]byte, 8), `{"AccessToken":{"k":{"secret":"at"}}}`...),
	"7-bytes":                 []byte("secret!"),
}

// ItemKey is the memcached key of the store key key.
func ItemKey(s *Store, key string) (string, error) { return s.itemKey(key) }
