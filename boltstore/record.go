package boltstore

import (
	"encoding/binary"
	"fmt"

	"github.com/msalcache/msalcache"
)

// A record is what the store keeps under each key in its bucket:
//
//	offset  size  field
//	0       1     format (formatV1)
//	1       8     version, big-endian uint64, never 0
//	9       8     expiry, big-endian int64 unix nanoseconds, 0 for none
//	17      n     value
//
// bbolt has no TTL and no per-key version, so both travel with the value.
// The format byte lets a later release change the layout and still read
// files written by this one.
const (
	formatV1  byte = 1
	headerLen      = 1 + 8 + 8
)

type record struct {
	version driver.Version
	expires int64 // unix nanoseconds; 0: never
	value   []byte
}

// live reports whether the record has not expired at now (unix nanoseconds).
func (r record) live(now int64) bool {
	return r.expires == 0 || now < r.expires
}

// newRecord lays out a record for value with a zero version, which the
// write transaction fills in with setVersion once it has drawn one. The
// value is copied, so the caller may reuse its slice as soon as Save
// returns (or even before the transaction runs).
func newRecord(value []byte, expires int64) []byte {
	b := make([]byte, headerLen+len(value))
	b[0] = formatV1
	binary.BigEndian.PutUint64(b[9:17], uint64(expires))
	copy(b[headerLen:], value)
	return b
}

// setVersion writes v into a record made by newRecord.
func setVersion(b []byte, v driver.Version) {
	binary.BigEndian.PutUint64(b[1:9], uint64(v))
}

// decodeRecord parses b without copying: the returned value aliases b, which
// for bytes read from bbolt is valid only inside the transaction. Anything
// that is not a record this package wrote fails with ErrCorrupt, so a
// damaged file produces an error and never a panic or a bogus version.
func decodeRecord(b []byte) (record, error) {
	if len(b) < headerLen {
		return record{}, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrCorrupt, len(b), headerLen)
	}
	if b[0] != formatV1 {
		return record{}, fmt.Errorf("%w: unknown format %d", ErrCorrupt, b[0])
	}
	r := record{
		version: driver.Version(binary.BigEndian.Uint64(b[1:9])),
		expires: int64(binary.BigEndian.Uint64(b[9:17])),
		value:   b[headerLen:],
	}
	if r.version == driver.NoVersion {
		return record{}, fmt.Errorf("%w: version 0", ErrCorrupt)
	}
	if r.expires < 0 {
		return record{}, fmt.Errorf("%w: negative expiry", ErrCorrupt)
	}
	return r, nil
}
