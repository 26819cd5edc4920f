package storeopt

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type config struct{ a, b int }

type option func(*config) error

func set(p *int, v int) option {
	return func(*config) error { *p = v; return nil }
}

func TestApplyKeepsTheFirstErrorAndRunsTheRest(t *testing.T) {
	var c config
	first, second := errors.New("first"), errors.New("second")
	err := Apply(&c, []option{
		func(c *config) error { c.a = 1; return nil },
		func(*config) error { return first },
		func(*config) error { return second },
		func(c *config) error { c.b = 2; return nil },
	})
	if err != first {
		t.Fatalf("Apply = %v, want the first error", err)
	}
	if c.a != 1 || c.b != 2 {
		t.Fatalf("config = %+v: options around the failing ones did not run", c)
	}
}

func TestApplyRefusesNil(t *testing.T) {
	var c config
	err := Apply(&c, []option{set(&c.a, 1), nil, set(&c.b, 2)})
	if err == nil || !strings.Contains(err.Error(), "option 2 of 3 is nil") {
		t.Fatalf("Apply with a nil option = %v, want it named by position", err)
	}
	if c.a != 1 || c.b != 2 {
		t.Fatalf("config = %+v: the options beside the nil one did not run", c)
	}
	if err := Apply(&c, []option(nil)); err != nil {
		t.Fatalf("Apply of no options = %v", err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int]string{
		0:  "WithMaxValueSize(0): pass a positive size in bytes, or omit the option for the default 1 KiB",
		-1: "WithMaxValueSize(-1): pass a positive size in bytes, or omit the option for the default 1 KiB",
		11: "WithMaxValueSize(11): the server holds 10; pass at most 10, or omit the option for the default 1 KiB",
	} {
		if err := Size("WithMaxValueSize", n, 10, "the server holds 10", "1 KiB"); err == nil || err.Error() != want {
			t.Errorf("Size(%d) = %v, want %s", n, err, want)
		}
	}
	for _, n := range []int{1, 10} {
		if err := Size("WithMaxValueSize", n, 10, "", ""); err != nil {
			t.Errorf("Size(%d) = %v, want it accepted", n, err)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:            "WithTimeout(0s): pass a positive duration, or omit the option for the default 2s",
		-time.Second: "WithTimeout(-1s): pass a positive duration, or omit the option for the default 2s",
	} {
		if err := Duration("WithTimeout", d, 2*time.Second); err == nil || err.Error() != want {
			t.Errorf("Duration(%v) = %v, want %s", d, err, want)
		}
	}
	if err := Duration("WithTimeout", time.Nanosecond, time.Second); err != nil {
		t.Errorf("Duration(1ns) = %v, want it accepted", err)
	}
}
