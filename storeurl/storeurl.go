// Package storeurl opens an msalcache store named by a URL, so that
// programs and the msalcache command take one string (a flag, an
// environment variable) for any backend:
//
//	bbolt:///var/lib/app/tokens.db          absolute path
//	bbolt:tokens.db                          path relative to the working directory
//	bbolt:tokens.db?bucket=b&lock_timeout=2s boltstore.WithBucket, WithLockTimeout
//	redis://user:pass@host:6379/0?dial_timeout=3s  one Redis node (go-redis's redis.ParseURL syntax and query options)
//	rediss://host:6380                       the same over TLS
//	redis+cluster://h1:6379,h2:6379          Redis Cluster (seed nodes; redis.ParseClusterURL's query options)
//	redis+sentinel://s1:26379,s2:26379/mymaster      Sentinel: sentinel addresses, then the master's name
//	redis+sentinel://u:p@s1:26379/mymaster/2?sentinel_password=x  database 2; u:p log in to the master
//	memcache://h1:11211,h2:11211             memcached servers (keys sharded over them, as gomemcache does)
//	postgres://user:pass@host:5432/db?sslmode=verify-full&table=t  PostgreSQL (pgx's URL syntax and options; table=, unlogged=true: see postgres.go)
//
// The Cluster and Sentinel forms put several hosts in the authority,
// separated by commas, because an operator copies them so from the
// deployment's configuration; rediss+cluster and rediss+sentinel add TLS.
// In the Sentinel form the URL's user and password are the master's (the
// ones the application uses); the sentinels' own, if they have any, are the
// query options sentinel_username and sentinel_password.
//
// A password in a URL is never printed back: URL.String, and every error
// of this package, show it as "xxxxx" (Redact).
package storeurl

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Kind names the backend a URL opens.
type Kind string

// The kinds of store a URL names.
const (
	Bolt          Kind = "bbolt"
	Redis         Kind = "redis"
	RedisCluster  Kind = "redis+cluster"
	RedisSentinel Kind = "redis+sentinel"
	Memcache      Kind = "memcache"
)

// ErrInvalidURL is wrapped by every error of Parse.
var ErrInvalidURL = errors.New("storeurl: invalid store URL")

// URL is a parsed store URL. Its fields hold what Open needs; String
// gives the URL back with its passwords redacted.
type URL struct {
	Kind Kind
	// Path is the bbolt file (Bolt).
	Path string
	// Bucket and LockTimeout are bbolt's query options (zero: default).
	Bucket      string
	LockTimeout time.Duration
	// Redis holds the client options of the Redis kinds. For Redis it
	// is the single node's, for RedisCluster Addrs and the cluster
	// options, for RedisSentinel MasterName, SentinelAddrs and the rest.
	Redis *redis.UniversalOptions
	// Servers are the memcached servers (Memcache).
	Servers []string
	// Pool is the pgxpool configuration of a Postgres URL. Set its
	// BeforeConnect before Open to log in with a token (see pgstore's
	// Entra ID example).
	Pool *pgxpool.Config

	pgTable    string // pgstore.WithTable (Postgres)
	pgUnlogged bool   // pgstore.WithUnlogged (Postgres)

	redacted string
}

// String returns the URL with every password replaced by "xxxxx".
func (u *URL) String() string { return u.redacted }

// Parse reads a store URL. It does no I/O. Errors wrap ErrInvalidURL
// and show the URL redacted.
func Parse(raw string) (*URL, error) {
	red := Redact(raw)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidURL, red, fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" {
		return nil, fail("no scheme; use bbolt:, redis://, rediss://, redis+cluster://, redis+sentinel://, memcache:// or postgres://")
	}
	u := &URL{redacted: red}
	switch strings.ToLower(scheme) {
	case "bbolt", "bolt":
		u.Kind = Bolt
		if err := u.parseBolt(rest); err != nil {
			return nil, fail("%v", err)
		}
	case "redis", "rediss":
		u.Kind = Redis
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fail("%s", scrub(err, raw))
		}
		u.Redis = &redis.UniversalOptions{
			Addrs: []string{o.Addr}, ClientName: o.ClientName, DB: o.DB, Protocol: o.Protocol,
			Username: o.Username, Password: o.Password, MaxRetries: o.MaxRetries,
			MinRetryBackoff: o.MinRetryBackoff, MaxRetryBackoff: o.MaxRetryBackoff,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolFIFO: o.PoolFIFO, PoolSize: o.PoolSize, PoolTimeout: o.PoolTimeout,
			MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns, MaxActiveConns: o.MaxActiveConns,
			ConnMaxIdleTime: o.ConnMaxIdleTime, ConnMaxLifetime: o.ConnMaxLifetime,
			TLSConfig: o.TLSConfig, DisableIdentity: o.DisableIdentity,
		}
	case "redis+cluster", "rediss+cluster":
		u.Kind = RedisCluster
		if err := u.parseCluster(raw, scheme); err != nil {
			return nil, fail("%v", err)
		}
	case "redis+sentinel", "rediss+sentinel":
		u.Kind = RedisSentinel
		if err := u.parseSentinel(raw, scheme); err != nil {
			return nil, fail("%v", err)
		}
	case "postgres", "postgresql":
		u.Kind = Postgres
		if err := u.parsePostgres(raw); err != nil {
			return nil, fail("%v", err)
		}
	case "memcache", "memcached":
		u.Kind = Memcache
		if err := u.parseMemcache(rest); err != nil {
			return nil, fail("%v", err)
		}
	default:
		return nil, fail("unknown scheme %q; use bbolt:, redis://, rediss://, redis+cluster://, redis+sentinel://, memcache:// or postgres://", truncate(scheme, 40))
	}
	return u, nil
}

func (u *URL) parseBolt(rest string) error {
	rest, query, _ := strings.Cut(rest, "?")
	switch {
	case strings.HasPrefix(rest, "///"):
		u.Path = rest[2:]
	case strings.HasPrefix(rest, "//"):
		return errors.New("a bbolt URL names a local file: bbolt:///absolute/path or bbolt:relative/path (a host is not allowed)")
	default:
		u.Path = rest
	}
	if u.Path == "" || u.Path == "/" {
		return errors.New("no file: use bbolt:///absolute/path or bbolt:relative/path")
	}
	p, err := url.PathUnescape(u.Path)
	if err != nil {
		return errors.New("the path has a bad %-escape")
	}
	u.Path = filepath.Clean(p)
	q, err := url.ParseQuery(query)
	if err != nil {
		return errors.New("the query does not parse")
	}
	for k, v := range q {
		val := v[len(v)-1]
		switch k {
		case "bucket":
			if val == "" {
				return errors.New("bucket= is empty")
			}
			u.Bucket = val
		case "lock_timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return fmt.Errorf("lock_timeout=%q is not a positive duration such as 2s", truncate(val, 40))
			}
			u.LockTimeout = d
		default:
			return fmt.Errorf("unknown bbolt option %q; bbolt takes bucket= and lock_timeout=", truncate(k, 40))
		}
	}
	return nil
}

// splitHosts cuts "scheme://userinfo@h1,h2/path?query" into the URL
// without its extra hosts ("redis[s]://userinfo@h1/path?query") and the
// other hosts.
func splitHosts(raw, scheme string) (first string, others []string, err error) {
	rest := raw[len(scheme)+1:]
	if !strings.HasPrefix(rest, "//") {
		return "", nil, errors.New("want " + scheme + "://host:port,host:port")
	}
	rest = rest[2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	hosts := strings.Split(authority, ",")
	for _, h := range hosts {
		if h == "" {
			return "", nil, errors.New("an empty host in the host list")
		}
	}
	base := "redis"
	if strings.HasPrefix(strings.ToLower(scheme), "rediss") {
		base = "rediss"
	}
	return base + "://" + userinfo + hosts[0] + tail, hosts[1:], nil
}

func (u *URL) parseCluster(raw, scheme string) error {
	first, others, err := splitHosts(raw, scheme)
	if err != nil {
		return err
	}
	pu, err := url.Parse(first)
	if err != nil {
		return errors.New(scrub(err, raw))
	}
	if pu.Path != "" && pu.Path != "/" {
		return errors.New("a Redis Cluster has only database 0: remove the path")
	}
	q := pu.Query()
	for _, h := range others {
		q.Add("addr", h)
	}
	pu.RawQuery = q.Encode()
	o, err := redis.ParseClusterURL(pu.String())
	if err != nil {
		return errors.New(scrub(err, raw))
	}
	u.Redis = &redis.UniversalOptions{
		Addrs: o.Addrs, ClientName: o.ClientName, Protocol: o.Protocol,
		Username: o.Username, Password: o.Password, MaxRetries: o.MaxRetries,
		MaxRedirects: o.MaxRedirects, ReadOnly: o.ReadOnly, RouteByLatency: o.RouteByLatency, RouteRandomly: o.RouteRandomly,
		MinRetryBackoff: o.MinRetryBackoff, MaxRetryBackoff: o.MaxRetryBackoff,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolFIFO: o.PoolFIFO, PoolSize: o.PoolSize, PoolTimeout: o.PoolTimeout,
		MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns, MaxActiveConns: o.MaxActiveConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime, ConnMaxLifetime: o.ConnMaxLifetime,
		TLSConfig: o.TLSConfig, DisableIdentity: o.DisableIdentity,
		IsClusterMode: true,
	}
	return nil
}

func (u *URL) parseSentinel(raw, scheme string) error {
	first, others, err := splitHosts(raw, scheme)
	if err != nil {
		return err
	}
	pu, err := url.Parse(first)
	if err != nil {
		return errors.New(scrub(err, raw))
	}
	parts := strings.FieldsFunc(pu.Path, func(r rune) bool { return r == '/' })
	if len(parts) == 0 || len(parts) > 2 {
		return errors.New("name the master after the sentinels: redis+sentinel://s1:26379,s2:26379/mastername[/db]")
	}
	master := parts[0]
	q := pu.Query()
	// ParseFailoverURL reads the URL's user as the sentinels': this form
	// gives it to the master, the sentinels' coming from the query.
	sentUser, sentPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	if pu.User != nil {
		q.Set("username", pu.User.Username())
		if p, ok := pu.User.Password(); ok {
			q.Set("password", p)
		}
		pu.User = nil
	}
	if sentUser != "" || sentPass != "" {
		pu.User = url.UserPassword(sentUser, sentPass)
	}
	q.Set("master_name", master)
	for _, h := range others {
		q.Add("addr", h)
	}
	pu.Path = ""
	if len(parts) == 2 {
		pu.Path = "/" + parts[1]
	}
	pu.RawQuery = q.Encode()
	o, err := redis.ParseFailoverURL(pu.String())
	if err != nil {
		return errors.New(scrub(err, raw))
	}
	u.Redis = &redis.UniversalOptions{
		Addrs: o.SentinelAddrs, MasterName: o.MasterName, ClientName: o.ClientName, DB: o.DB, Protocol: o.Protocol,
		Username: o.Username, Password: o.Password, SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
		MaxRetries: o.MaxRetries, MinRetryBackoff: o.MinRetryBackoff, MaxRetryBackoff: o.MaxRetryBackoff,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolFIFO: o.PoolFIFO, PoolSize: o.PoolSize, PoolTimeout: o.PoolTimeout,
		MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns, MaxActiveConns: o.MaxActiveConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime, ConnMaxLifetime: o.ConnMaxLifetime,
		TLSConfig: o.TLSConfig, DisableIdentity: o.DisableIdentity,
		RouteByLatency: o.RouteByLatency, RouteRandomly: o.RouteRandomly,
	}
	return nil
}

func (u *URL) parseMemcache(rest string) error {
	if !strings.HasPrefix(rest, "//") {
		return errors.New("want memcache://host:port,host:port")
	}
	rest = rest[2:]
	if strings.ContainsAny(rest, "/?#@") {
		return errors.New("a memcache URL is only a list of servers: memcache://host:11211,host:11211 (memcached has no path, options or passwords)")
	}
	for _, h := range strings.Split(rest, ",") {
		if h == "" {
			return errors.New("an empty server in the list")
		}
		if !strings.Contains(h, ":") {
			h += ":11211"
		}
		u.Servers = append(u.Servers, h)
	}
	return nil
}

// Redact returns raw with the password of its user information, and the
// value of every query option whose name contains "password", replaced by
// "xxxxx". It works on text that does not parse as a URL too, so that an
// error about a malformed URL never shows its password.
func Redact(raw string) string {
	out := raw
	if i := strings.Index(out, "://"); i >= 0 {
		start := i + 3
		end := len(out)
		if j := strings.IndexAny(out[start:], "/?#"); j >= 0 {
			end = start + j
		}
		authority := out[start:end]
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			userinfo := authority[:at]
			if c := strings.IndexByte(userinfo, ':'); c >= 0 {
				userinfo = userinfo[:c+1] + "xxxxx"
			} else if userinfo != "" {
				// redis://secret@host: go-redis reads a lone user as
				// the password; hide it whatever the scheme.
				userinfo = "xxxxx"
			}
			out = out[:start] + userinfo + authority[at:] + out[end:]
		}
	}
	if q := strings.IndexByte(out, '?'); q >= 0 {
		params := strings.Split(out[q+1:], "&")
		for i, p := range params {
			name, _, found := strings.Cut(p, "=")
			if found && strings.Contains(strings.ToLower(name), "password") {
				params[i] = name + "=xxxxx"
			}
		}
		out = out[:q+1] + strings.Join(params, "&")
	}
	return out
}

// scrub returns err's text with no trace of raw's password: url.Parse
// quotes the URL it fails on, so only its inner error is kept, and a text
// that still holds the password (plain or quoted) is replaced whole.
func scrub(err error, raw string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if p := password(raw); p != "" {
		quoted := strings.Trim(strconv.Quote(p), `"`)
		if strings.Contains(msg, p) || strings.Contains(msg, quoted) {
			return "the URL does not parse"
		}
	}
	return msg
}

// password extracts the userinfo password of raw, for scrubbing.
func password(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return ""
	}
	a := raw[i+3:]
	if j := strings.IndexAny(a, "/?#"); j >= 0 {
		a = a[:j]
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return ""
	}
	_, p, _ := strings.Cut(a[:at], ":")
	if p == "" {
		p = a[:at]
	}
	return p
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
