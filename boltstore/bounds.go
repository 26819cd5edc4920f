package boltstore

// BoundsContext implements driver.ContextBounder: reads come from the
// memory-mapped file and a write waits for its batch only as long as ctx
// allows.
func (s *Store) BoundsContext() bool { return true }
