package storeurl_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/pgstore"
	"github.com/msalcache/msalcache/storeurl"
)

func TestParsePostgres(t *testing.T) {
	u, err := storeurl.Parse("postgresql://app:s3cret@db.example:6543/tokens?sslmode=disable&table=cache_t&unlogged=true&pool_max_conns=7")
	if err != nil {
		t.Fatal(err)
	}
	c := u.Pool.ConnConfig
	if u.Kind != storeurl.Postgres || c.Host != "db.example" || c.Port != 6543 || c.Database != "tokens" || c.User != "app" || c.Password != "s3cret" || u.Pool.MaxConns != 7 {
		t.Fatalf("%+v %+v", u, c)
	}
	if _, leaked := c.RuntimeParams["table"]; leaked {
		t.Fatal("table= reached pgx as a run-time parameter")
	}
	if s := u.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "app:xxxxx@") {
		t.Fatalf("String() = %q", s)
	}
	for _, bad := range []string{
		"postgres://app:s3cret@h/db?table=Bad-Name",
		"postgres://app:s3cret@h/db?unlogged=maybe",
		"postgres://app:s3cret@h:notaport/db",
		"postgres://app:s3cret@h/db?sslmode=sometimes",
	} {
		_, err := storeurl.Parse(bad)
		if !errors.Is(err, storeurl.ErrInvalidURL) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Parse(%q) = %v; want ErrInvalidURL without the password", storeurl.Redact(bad), err)
		}
	}
}

func TestOpenPostgres(t *testing.T) {
	srv := testserver.Postgres(t)
	ctx := context.Background()
	raw := srv.URL("postgres") + "&table=from_url"
	if _, err := storeurl.Open(ctx, raw, storeurl.WithPrefix("p:")); err == nil {
		t.Fatal("Open with a prefix succeeded; PostgreSQL separates data by table")
	}
	s, err := storeurl.Open(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Postgres == nil || s.Store.(*pgstore.Store).Table() != "from_url" {
		t.Fatalf("%+v", s)
	}
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	lt, err := s.Store.(driver.Lifetimer).Lifetime(ctx, "k")
	if err != nil || lt <= 59*time.Minute || lt > time.Hour {
		t.Fatalf("Lifetime = %v, %v", lt, err)
	}
}
