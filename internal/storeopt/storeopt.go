// Package storeopt applies the functional options of the stores, so that
// every store treats bad options alike: the first invalid option is the
// error, whether the constructor returns it (boltstore.Open) or keeps it
// for every call (the constructors that, like redis.NewClient, return no
// error).
package storeopt

import (
	"errors"
	"fmt"
	"time"
)

// Apply calls each option on cfg in order and returns the first error. A
// nil option is an error too, not something to skip: it usually stands for
// a setting the caller meant to make and did not. Options after a failing
// one still run, so that settings unrelated to the failure (who owns the
// client, say) hold even in a store that refuses every call.
func Apply[C any, O ~func(*C) error](cfg *C, opts []O) error {
	var first error
	for i, o := range opts {
		var err error
		if o == nil {
			err = fmt.Errorf("option %d of %d is nil: leave it out, or pass one of the package's With options", i+1, len(opts))
		} else {
			err = o(cfg)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Size checks n, the size in bytes given to option, against 1..max. limit
// says why max is the largest (what the server can hold), def what omitting
// the option gives. A size outside the range is refused rather than
// clamped, so that a limit the caller got wrong shows at once.
func Size(option string, n, max int, limit, def string) error {
	switch {
	case n < 1:
		return fmt.Errorf("%s(%d): pass a positive size in bytes, or omit the option for the default %s", option, n, def)
	case n > max:
		return fmt.Errorf("%s(%d): %s; pass at most %d, or omit the option for the default %s", option, n, limit, max, def)
	}
	return nil
}

// Duration checks d, the duration given to option: zero or less means
// nothing for any option of the stores, and reading it as the default
// would hide the caller's mistake.
func Duration(option string, d, def time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s(%v): pass a positive duration, or omit the option for the default %v", option, d, def)
	}
	return nil
}

// ErrNilClock is the error of WithClock(nil) in every store that has the
// option: the store would panic at its first call.
var ErrNilClock = errors.New("WithClock(nil): pass a func that returns the time, or omit the option for time.Now")
