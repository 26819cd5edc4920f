// Package record is the value layout shared by the stores whose server
// knows nothing of versions (Redis, memcached): the version the store chose
// for a write, 8 bytes big-endian, in front of the value. Keeping the
// version inside the value makes it survive a server restart and lets a
// store check it atomically with the data.
package record

import (
	"encoding/binary"
	"fmt"

	"github.com/msalcache/msalcache"
)

// HeaderSize is the length of the version in front of every value.
const HeaderSize = 8

// Encode returns the record of value written at version v.
func Encode(v driver.Version, value []byte) []byte {
	rec := make([]byte, HeaderSize+len(value))
	binary.BigEndian.PutUint64(rec, uint64(v))
	copy(rec[HeaderSize:], value)
	return rec
}

// Decode splits a record into its version and value. A record too short to
// hold a version, or holding NoVersion (which no store writes, and which a
// store must never hand out, since a Save with it would mean "create"),
// fails with an error wrapping driver.ErrCorrupt. The error gives the
// record's length, never its bytes: a damaged record may still hold most of
// a token cache. value aliases rec, with its capacity capped so that
// appending to it cannot touch rec.
func Decode(rec []byte) (value []byte, v driver.Version, err error) {
	if len(rec) < HeaderSize {
		return nil, driver.NoVersion, fmt.Errorf("%w: %d bytes, shorter than the %d-byte version", driver.ErrCorrupt, len(rec), HeaderSize)
	}
	v = driver.Version(binary.BigEndian.Uint64(rec))
	if v == driver.NoVersion {
		return nil, driver.NoVersion, fmt.Errorf("%w: version 0, which no store writes", driver.ErrCorrupt)
	}
	return rec[HeaderSize:len(rec):len(rec)], v, nil
}
