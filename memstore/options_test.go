package memstore_test

import (
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/storetest"
	"github.com/msalcache/msalcache/memstore"
)

// TestInvalidOptionFailsEveryCall: New cannot return an error, so a store
// built with an option it refuses must fail every call with an error that
// names the call, the option and what to pass, instead of falling back to
// time.Now or panicking later on a nil clock.
func TestInvalidOptionFailsEveryCall(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []memstore.Option
		want string
	}{
		{"nil clock", []memstore.Option{memstore.WithClock(nil)},
			"WithClock(nil): pass a func that returns the time, or omit the option for time.Now"},
		{"nil option", []memstore.Option{memstore.WithClock(time.Now), nil},
			"option 2 of 2 is nil: leave it out, or pass one of the package's With options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New(tc.opts...)
			storetest.RefusesEveryCall(t, s, "memstore", tc.want)
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
	}
}
