package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// refusing is a Store that fails every call as the stores do when an
// option was invalid, except for the call named by wrong, which it answers
// with the error of wrong's kind.
type refusing struct {
	pkg, msg string
	wrong    string // a call to get wrong
	kind     string // how: "nil", "no prefix", "other text"
}

func (r refusing) err(op string) error {
	if op == r.wrong {
		switch r.kind {
		case "nil":
			return nil
		case "no prefix":
			return errors.New(r.msg)
		case "other text":
			return fmt.Errorf("%s: %s: something else", r.pkg, op)
		}
	}
	return fmt.Errorf("%s: %s: %s", r.pkg, op, r.msg)
}

func (r refusing) Load(context.Context, string) ([]byte, driver.Version, error) {
	return nil, driver.NoVersion, r.err("load")
}
func (r refusing) Save(context.Context, string, []byte, driver.Version, time.Duration) (driver.Version, error) {
	return driver.NoVersion, r.err("save")
}
func (r refusing) Delete(context.Context, string) error { return r.err("delete") }
func (r refusing) Close() error                         { return nil }
func (r refusing) Ping(context.Context) error           { return r.err("ping") }
func (r refusing) List(context.Context, string, func(string) error) error {
	return r.err("list")
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }

func TestRefusesEveryCall(t *testing.T) {
	const pkg, msg = "somestore", "WithX(0): pass a positive x"
	rec := &recorder{TB: t}
	errs := RefusesEveryCall(rec, refusing{pkg: pkg, msg: msg}, pkg, "WithX(0)")
	if rec.failed || len(errs) != 5 {
		t.Fatalf("a store refusing every call failed the check (%v) or was not called 5 times (%d)", rec.failed, len(errs))
	}
	for _, op := range []string{"load", "save", "delete", "list", "ping"} {
		for _, kind := range []string{"nil", "no prefix", "other text"} {
			rec := &recorder{TB: t}
			RefusesEveryCall(rec, refusing{pkg: pkg, msg: msg, wrong: op, kind: kind}, pkg, "WithX(0)")
			if !rec.failed {
				t.Errorf("a store whose %s returns an error of kind %q passed", op, kind)
			}
		}
	}
}
