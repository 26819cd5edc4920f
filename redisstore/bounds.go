package redisstore

// BoundsContext implements driver.ContextBounder: every call returns
// once ctx is done, by the socket deadline of a client built with
// ContextTimeoutEnabled or else by watching ctx on a goroutine of its own,
// so the Adapter need not add another.
func (s *Store) BoundsContext() bool { return true }
