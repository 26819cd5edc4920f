package memstore

// BoundsContext implements driver.ContextBounder: no call waits on
// anything but the store's own short critical sections.
func (s *Store) BoundsContext() bool { return true }
