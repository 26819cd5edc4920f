package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/storeurl"
)

// errNoFile reports a bbolt URL whose file does not exist.
var errNoFile = errors.New("no bbolt file")

// openBoltReadOnly opens the bbolt file of u for a command that only
// reads: the file must exist (a mistyped path is an error, never a new
// 32 KB file), and bbolt opens it read-only, so that no transaction is
// committed and the file's bytes and mtime stay as they were.
func openBoltReadOnly(u *storeurl.URL, prefix bool) (*storeurl.Store, error) {
	if prefix {
		return nil, fmt.Errorf("storeurl: %s: bbolt has no key prefix; separate data by bucket (?bucket=name) or by file", u)
	}
	fi, err := os.Stat(u.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: check the path (a command that only reads never creates one)", errNoFile, u.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", u, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open %s: %s is not a regular file", u, u.Path)
	}
	opts := []boltstore.Option{boltstore.WithReadOnly()}
	if u.Bucket != "" {
		opts = append(opts, boltstore.WithBucket(u.Bucket))
	}
	if u.LockTimeout > 0 {
		opts = append(opts, boltstore.WithLockTimeout(u.LockTimeout))
	}
	s, err := boltstore.Open(u.Path, opts...)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", u, err)
	}
	return &storeurl.Store{Store: s, URL: u, Bolt: s}, nil
}
