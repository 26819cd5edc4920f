package memstore

// BoundsContext implements msalcache.ContextBounder: no call waits on
// anything but the store's own short critical sections.
func (s *Store) BoundsContext() bool { return true }
