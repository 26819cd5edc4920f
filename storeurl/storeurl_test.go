package storeurl_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/storeurl"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		check func(t *testing.T, u *storeurl.URL)
	}{
		{"bbolt:///var/lib/app/tokens.db", func(t *testing.T, u *storeurl.URL) {
			if u.Kind != storeurl.Bolt || u.Path != "/var/lib/app/tokens.db" {
				t.Fatalf("%+v", u)
			}
		}},
		{"bbolt:data/tokens.db?bucket=b1&lock_timeout=3s", func(t *testing.T, u *storeurl.URL) {
			if u.Path != filepath.Clean("data/tokens.db") || u.Bucket != "b1" || u.LockTimeout != 3*time.Second {
				t.Fatalf("%+v", u)
			}
		}},
		{"redis://u:s3cret@h:6390/2?dial_timeout=3s", func(t *testing.T, u *storeurl.URL) {
			r := u.Redis
			if u.Kind != storeurl.Redis || r.Addrs[0] != "h:6390" || r.DB != 2 || r.Password != "s3cret" || r.Username != "u" || r.DialTimeout != 3*time.Second {
				t.Fatalf("%+v", r)
			}
		}},
		{"rediss://h:6380", func(t *testing.T, u *storeurl.URL) {
			if u.Redis.TLSConfig == nil {
				t.Fatal("rediss without TLS")
			}
		}},
		{"redis+cluster://:pw@h1:7000,h2:7001,h3:7002?read_timeout=2s", func(t *testing.T, u *storeurl.URL) {
			r := u.Redis
			if u.Kind != storeurl.RedisCluster || !slices.Equal(r.Addrs, []string{"h1:7000", "h2:7001", "h3:7002"}) || r.Password != "pw" || r.ReadTimeout != 2*time.Second {
				t.Fatalf("%+v", r)
			}
		}},
		{"redis+sentinel://u:mpw@s1:26379,s2:26380/mymaster/3?sentinel_password=spw", func(t *testing.T, u *storeurl.URL) {
			r := u.Redis
			if u.Kind != storeurl.RedisSentinel || r.MasterName != "mymaster" || r.DB != 3 ||
				!slices.Equal(r.Addrs, []string{"s1:26379", "s2:26380"}) || r.Username != "u" || r.Password != "mpw" || r.SentinelPassword != "spw" {
				t.Fatalf("%+v", r)
			}
		}},
		{"memcache://m1:11211,m2", func(t *testing.T, u *storeurl.URL) {
			if u.Kind != storeurl.Memcache || !slices.Equal(u.Servers, []string{"m1:11211", "m2:11211"}) {
				t.Fatalf("%+v", u)
			}
		}},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			u, err := storeurl.Parse(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, u)
			for _, secret := range []string{"s3cret", "pw@", "mpw", "spw"} {
				if strings.Contains(u.String(), secret) {
					t.Fatalf("String() = %q shows a password", u.String())
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, raw := range []string{
		"", "tokens.db", "ftp://x", "bbolt:", "bbolt://host/x", "bbolt:x?nope=1", "bbolt:x?lock_timeout=-1s",
		"redis://u:hunter2@h:notaport", "redis://u:hunter2@h/notadb", "redis://u:hunter2@h?bogus=1",
		"redis+cluster://u:hunter2@h1,,h2", "redis+cluster://u:hunter2@h1/1",
		"redis+sentinel://u:hunter2@s1,s2", "memcache://u:hunter2@h", "memcache://h1,,h2", "memcache:h",
	} {
		_, err := storeurl.Parse(raw)
		if !errors.Is(err, storeurl.ErrInvalidURL) {
			t.Errorf("Parse(%q) = %v; want ErrInvalidURL", raw, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) error shows the password: %v", raw, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://user:pw@h:1/0":                            "redis://user:xxxxx@h:1/0",
		"redis://pw@h":                                     "redis://xxxxx@h",
		"rediss://h?password=pw&dial_timeout=1":            "rediss://h?password=xxxxx&dial_timeout=1",
		"redis+sentinel://u:p@s1,s2/m?sentinel_password=q": "redis+sentinel://u:xxxxx@s1,s2/m?sentinel_password=xxxxx",
		"bbolt:///a/b":                                     "bbolt:///a/b",
		"redis://h:1/0":                                    "redis://h:1/0",
		"redis://u:p:q@@h/":                                "redis://u:xxxxx@h/",
	} {
		if got := storeurl.Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q; want %q", raw, got, want)
		}
	}
}

func TestOpenBolt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	s, err := storeurl.Open(ctx, "bbolt://"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, "k", []byte("v"), driver.NoVersion, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Store.(driver.Lifetimer); !ok || s.Bolt == nil {
		t.Fatal("a bbolt store should be a Lifetimer")
	}
	s.Close()
	if _, err := storeurl.Open(ctx, "bbolt://"+path, storeurl.WithPrefix("p:")); err == nil || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("a prefix on bbolt: %v; want an error pointing at ?bucket=", err)
	}
}

// FuzzParse: no input panics, and no password shows in an error or in
// String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"bbolt:///a", "bbolt:a?bucket=b", "redis://u:PASSWORD@h:1/0", "rediss://PASSWORD@h",
		"redis+cluster://u:PASSWORD@a:1,b:2", "redis+sentinel://u:PASSWORD@a:1,b:2/m/1?sentinel_password=PASSWORD",
		"memcache://a,b:2", "redis://u:PASSWORD@h:x", "redis://h?password=PASSWORD",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := storeurl.Parse(raw)
		const secret = "PASSWORD"
		if !strings.Contains(raw, secret) || strings.Count(raw, secret) > 1 {
			return
		}
		// Only a password in the userinfo or a password= option is
		// promised to be hidden.
		i := strings.Index(raw, "://")
		at := strings.LastIndexByte(raw, '@')
		inUser := i >= 0 && at > i && strings.Index(raw, secret) > i && strings.Index(raw, secret) < at &&
			!strings.ContainsAny(raw[i+3:at], "/?#")
		if !inUser {
			return
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("Parse(%q) error shows the password: %v", raw, err)
		}
		if err == nil && strings.Contains(u.String(), secret) {
			t.Fatalf("String() of %q shows the password: %q", raw, u.String())
		}
	})
}
