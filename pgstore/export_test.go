package pgstore

import "time"

// ListenerPID returns the backend pid of s's listening connection, 0 when
// it has none, so that tests can cut it with pg_terminate_backend.
func ListenerPID(s *Store) uint32 {
	s.watch.pidMu.Lock()
	defer s.watch.pidMu.Unlock()
	return s.watch.pid
}

// SetWatchTiming shortens the health checks of s's watch.
func SetWatchTiming(s *Store, interval, timeout time.Duration) {
	s.watch.mu.Lock()
	s.watch.interval, s.watch.timeout = interval, timeout
	s.watch.mu.Unlock()
}
