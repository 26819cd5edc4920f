package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/storetest"
	"github.com/msalcache/msalcache/redisstore"
	"github.com/redis/go-redis/v9"
)

// TestInvalidOptionFailsEveryCall builds stores with each option value the
// package refuses. New cannot return an error, so every call must fail
// with one that names the call, the option and what to pass, before
// anything is sent: nothing listens on the client's address, so an error
// from the network would mean the option was clamped or ignored.
func TestInvalidOptionFailsEveryCall(t *testing.T) {
	c := newClient(t, &redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	for _, tc := range []struct {
		name string
		opts []redisstore.Option
		want string
	}{
		{"zero size", []redisstore.Option{redisstore.WithMaxValueSize(0)},
			"WithMaxValueSize(0): pass a positive size in bytes, or omit the option for the default 64 MiB"},
		{"negative size", []redisstore.Option{redisstore.WithMaxValueSize(-1)},
			"WithMaxValueSize(-1): pass a positive size in bytes, or omit the option for the default 64 MiB"},
		{"size over the Redis limit", []redisstore.Option{redisstore.WithMaxValueSize(redisstore.MaxValueSize + 1)},
			"WithMaxValueSize(536870905): Redis holds at most MaxValueSize bytes per value in this store's records; pass at most 536870904, or omit the option for the default 64 MiB"},
		{"nil option", []redisstore.Option{redisstore.WithPrefix("app:"), nil},
			"option 2 of 2 is nil: leave it out, or pass one of the package's With options"},
		{"first error kept", []redisstore.Option{redisstore.WithMaxValueSize(-2), redisstore.WithMaxValueSize(-3)},
			"WithMaxValueSize(-2):"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := redisstore.New(c, tc.opts...)
			storetest.RefusesEveryCall(t, s, "redisstore", tc.want)
			if err := s.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
	}
}

func TestNilClientNamesTheFix(t *testing.T) {
	storetest.RefusesEveryCall(t, redisstore.New(nil), "redisstore", "New(nil): pass a redis.UniversalClient")
}

// TestInvalidOptionKeepsOwnership: a store refusing every call because of
// one option still honours the others, so that Close closes a client the
// caller handed over with WithCloseClient.
func TestInvalidOptionKeepsOwnership(t *testing.T) {
	_, c, _ := newSingle(t)
	s := redisstore.New(c, redisstore.WithMaxValueSize(0), redisstore.WithCloseClient())
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping of a store built with WithMaxValueSize(0) succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("client after Close WithCloseClient: Ping = %v, want redis.ErrClosed", err)
	}
}

// TestEmptyPrefixMeansNoPrefix: WithPrefix("") is documented to use the
// store's keys as the Redis keys, with nothing in front.
func TestEmptyPrefixMeansNoPrefix(t *testing.T) {
	ctx := context.Background()
	_, c, _ := newSingle(t)
	s := redisstore.New(c, redisstore.WithPrefix(""))
	if _, err := s.Save(ctx, "bare", []byte("v"), driver.NoVersion, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, "bare").Val(); n != 1 {
		t.Fatalf("key bare does not exist (EXISTS = %d); keys of the default prefix: %v", n, c.Keys(ctx, redisstore.DefaultPrefix+"*").Val())
	}
	if got := listAll(t, s, ""); !slices.Equal(got, []string{"bare"}) {
		t.Fatalf("List = %v, want [bare]", got)
	}
}
