package boltstore_test

import "github.com/msalcache/msalcache/boltstore"

// uncheckedOption is WithoutOpenCheck; a separate file so that the same
// damaged_test.go runs against a tree without that hook (to count the
// crashes before a fix) with this file left out.
func uncheckedOption() boltstore.Option { return boltstore.WithoutOpenCheck() }
