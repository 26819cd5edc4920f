package memcachestore

// BoundsContext implements driver.ContextBounder: gomemcache cannot see
// ctx, so every call watches it on a goroutine of the store's own and
// returns once ctx is done; the Adapter need not add another.
func (s *Store) BoundsContext() bool { return true }
