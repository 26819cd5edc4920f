// Package record is the value layout shared by the stores whose server
// knows nothing of versions (Redis, memcached): the version the store chose
// for a write, 8 bytes big-endian, in front of the value. Keeping the
// version inside the value makes it survive a server restart and lets a
// store check it atomically with the data.
package record

import (
	"encoding/binary"

	"github.com/msalcache/msalcache"
)

// HeaderSize is the length of the version in front of every value.
const HeaderSize = 8

// Encode returns the record of value written at version v.
func Encode(v msalcache.Version, value []byte) []byte {
	rec := make([]byte, HeaderSize+len(value))
	binary.BigEndian.PutUint64(rec, uint64(v))
	copy(rec[HeaderSize:], value)
	return rec
}

// Decode splits a record into its version and value. ok is false for a
// record too short to hold a version or holding NoVersion, which no store
// writes. value aliases rec, with its capacity capped so that appending to
// it cannot touch rec.
func Decode(rec []byte) (value []byte, v msalcache.Version, ok bool) {
	if len(rec) < HeaderSize {
		return nil, msalcache.NoVersion, false
	}
	v = msalcache.Version(binary.BigEndian.Uint64(rec))
	if v == msalcache.NoVersion {
		return nil, msalcache.NoVersion, false
	}
	return rec[HeaderSize:len(rec):len(rec)], v, true
}
