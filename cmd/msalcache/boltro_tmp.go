package main

import "github.com/msalcache/msalcache/boltstore"

// TEMPORARY until boltstore.WithReadOnly lands from branch hostile.
func boltReadOnly() []boltstore.Option { return nil }
