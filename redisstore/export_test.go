package redisstore

import (
	"context"
	"fmt"

	"github.com/msalcache/msalcache"
)

// PutRaw is the conformance suite's Capabilities.PutRaw for this store: it
// SETs raw as the whole value of key, past the record format, on whatever
// deployment the store's client reaches (single node, Sentinel, Cluster).
func PutRaw(ctx context.Context, s msalcache.Store, key string, raw []byte) error {
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
