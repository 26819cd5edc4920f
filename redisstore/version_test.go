package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/redisstore"
)

// TestVersion: Version reads what Load would report as the version, with
// one GETRANGE and no GET, and reports absent and corrupt keys as Load
// does.
func TestVersion(t *testing.T) {
	ctx := context.Background()
	_, c, s := newSingle(t)
	big := make([]byte, 40<<10)
	v1, err := s.Save(ctx, "k", big, driver.NoVersion, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	gets, ranges := commandCalls(t, c, "get"), commandCalls(t, c, "getrange")
	if got, err := s.Version(ctx, "k"); err != nil || got != v1 {
		t.Fatalf("Version = %#x, %v; want %#x", got, err, v1)
	}
	if n := commandCalls(t, c, "get") - gets; n != 0 {
		t.Errorf("Version ran %d GETs, want none", n)
	}
	if n := commandCalls(t, c, "getrange") - ranges; n != 1 {
		t.Errorf("Version ran %d GETRANGEs, want 1", n)
	}
	v2, err := s.Save(ctx, "k", []byte("v2"), v1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, lv, err := s.Load(ctx, "k")
	if got, verr := s.Version(ctx, "k"); err != nil || verr != nil || got != v2 || lv != v2 {
		t.Fatalf("after an update: Version = %#x, %v; Load's version %#x, %v; want %#x", got, verr, lv, err, v2)
	}

	for _, key := range []string{"never-written", "k"} {
		if key == "k" {
			if err := s.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Version(ctx, key); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("Version of %s = %v, want ErrNotFound", key, err)
		}
	}
	for name, raw := range redisstore.CorruptRecords {
		if err := redisstore.PutRaw(ctx, s, "bad-"+name, raw); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Load(ctx, "bad-"+name); !errors.Is(err, driver.ErrCorrupt) {
			t.Fatalf("Load of %s = %v, want ErrCorrupt", name, err)
		}
		if v, err := s.Version(ctx, "bad-"+name); !errors.Is(err, driver.ErrCorrupt) {
			t.Errorf("Version of %s = %#x, %v; want ErrCorrupt, as Load", name, v, err)
		}
	}
	if err := c.HSet(ctx, redisstore.DefaultPrefix+"hash", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Version(ctx, "hash"); !errors.Is(err, driver.ErrCorrupt) {
		t.Errorf("Version of a hash = %v, want ErrCorrupt", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Version(cctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Version with a cancelled ctx = %v, want Canceled", err)
	}
	s.Close()
	if _, err := s.Version(ctx, "k"); !errors.Is(err, driver.ErrClosed) {
		t.Errorf("Version after Close = %v, want ErrClosed", err)
	}
}
