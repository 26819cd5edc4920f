//go:build race

package protect_test

// raceEnabled reports a build with the race detector, under which
// sync.Pool drops items at random, so allocation counts mean nothing.
const raceEnabled = true
