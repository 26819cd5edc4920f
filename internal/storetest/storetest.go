// Package storetest holds test helpers for what the stores of this module
// must do alike and the exported conformance suite cannot check, because
// it concerns how a store is built rather than the Store contract: a store
// whose constructor returns no error refuses every call when one of its
// options was invalid.
package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

// RefusesEveryCall calls Load, Save and Delete on s, and List and Ping where
// s has them, and fails t unless each returns an error that starts with
// pkg, the call's name and want, as in "redisstore: load: " + want...,
// so that the error says where it comes from, which option was wrong and
// what to pass. It returns the errors by call name ("load", "save",
// "delete", "list", "ping") for further checks. It does not close s.
func RefusesEveryCall(t testing.TB, s driver.Store, pkg, want string) map[string]error {
	t.Helper()
	ctx := context.Background()
	_, _, load := s.Load(ctx, "k")
	_, save := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Minute)
	errs := map[string]error{
		"load":   load,
		"save":   save,
		"delete": s.Delete(ctx, "k"),
	}
	if l, ok := s.(driver.Lister); ok {
		errs["list"] = l.List(ctx, "", func(string) error { return nil })
	}
	if p, ok := s.(driver.Pinger); ok {
		errs["ping"] = p.Ping(ctx)
	}
	for _, op := range []string{"load", "save", "delete", "list", "ping"} {
		err, ok := errs[op]
		if !ok {
			continue
		}
		if prefix := pkg + ": " + op + ": "; err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v; want %s...%s...", op, err, prefix, want)
		}
	}
	return errs
}
