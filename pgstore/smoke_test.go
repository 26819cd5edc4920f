package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	s := newStore(t, newPool(t, srv), freshTable())
	v, err := s.Save(ctx, "k", []byte("a"), driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, gv, err := s.Load(ctx, "k")
	if err != nil || gv != v || string(b) != "a" {
		t.Fatalf("%q %x %v", b, gv, err)
	}
	if _, err := s.Save(ctx, "k", []byte("b"), driver.NoVersion, 0); !errors.Is(err, driver.ErrConflict) {
		t.Fatal(err)
	}
	lt, err := s.Lifetime(ctx, "k")
	t.Log(lt, err)
}
