package boltstore

import (
	"context"
	"fmt"
	"os"

	"github.com/msalcache/msalcache/driver"
	bolt "go.etcd.io/bbolt"
)

// WithClock is withClock, for the package's external tests: a test hook,
// not part of the API.
var WithClock = withClock

// PutRaw is the conformance suite's RawPutter.PutRaw for this store: it
// writes raw as the record under key in s's bucket, past the record format,
// as a damaged file or another program would.
func PutRaw(ctx context.Context, s driver.Store, key string, raw []byte) error {
	bs, ok := s.(*Store)
	if !ok {
		return fmt.Errorf("PutRaw: %T is not a *boltstore.Store", s)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return bs.db.Update(func(tx *bolt.Tx) error {
		b, err := bs.bucketOf(tx)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), raw)
	})
}

// CorruptRecords are records of this package's layout that decodeRecord
// rejects: the conformance suite's RawPutter.CorruptRecords.
var CorruptRecords = map[string][]byte{
	// The right length, a valid format and expiry, version 0.
	"zero-version": append([]byte{formatV1}, make([]byte, headerLen-1)...),
	// The same with a value after the header.
	"zero-version-with-value": append(append([]byte{formatV1}, make([]byte, headerLen-1)...), `{"AccessToken":{}}`...),
	// The right length with an unknown format byte.
	"bad-format": {9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
	// One byte short of a header.
	"short-header": append([]byte{formatV1}, make([]byte, headerLen-2)...),
	// A version, and an expiry before 1970.
	"negative-expiry": {formatV1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	// A value written without any header.
	"plain-json": []byte(`{"AccessToken":{"k":{"secret":"at"}}}`),
}

// SetChmod replaces os.Chmod for Open until the returned func restores it.
func SetChmod(f func(string, os.FileMode) error) (restore func()) {
	old := chmod
	chmod = f
	return func() { chmod = old }
}

// WithoutOpenCheck makes Open skip its check of an existing file, so that
// a test reaches the run-time guards with a damaged one.
func WithoutOpenCheck() Option {
	return func(c *config) error {
		c.skipCheck = true
		return nil
	}
}
