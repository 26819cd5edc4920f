// Package ctxrun lets a store built on a client that ignores contexts
// (gomemcache; go-redis without ContextTimeoutEnabled) still return as soon
// as its caller's context is done.
package ctxrun

import "context"

// Do calls fn and returns its error, or ctx.Err() as soon as ctx is done,
// whichever comes first. When ctx wins, fn goes on in its own goroutine
// until the client's own timeout ends it, so fn must write its results
// only to variables the caller reads after Do returns nil. A context that
// can never be done costs no goroutine.
func Do(ctx context.Context, fn func() error) error {
	if ctx.Done() == nil {
		return fn()
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // finished at the same moment: keep the real outcome
			return err
		default:
			return ctx.Err()
		}
	}
}
