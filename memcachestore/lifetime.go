package memcachestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/msalcache/msalcache"
)

var _ driver.Lifetimer = (*Store)(nil)

// ErrNoServerList reports a Lifetime call on a Store built without
// WithServerList: memcache.Client does not tell which server holds a key.
// It wraps errors.ErrUnsupported.
var ErrNoServerList = fmt.Errorf("memcachestore: Lifetime needs the client's server list: build the Store with WithServerList (and the client with memcache.NewFromSelector on that list): %w", errors.ErrUnsupported)

// WithServerList gives the Store the server selection its client uses
// (build the client with memcache.NewFromSelector(ss)), which Lifetime
// needs: memcache.Client has no call that reads an item's expiry and does
// not expose which server holds a key, so Lifetime asks that server itself
// over a connection of its own.
func WithServerList(ss memcache.ServerSelector) Option {
	return func(c *config) error {
		if ss == nil {
			return errors.New("WithServerList(nil): pass the *memcache.ServerList the client was built from")
		}
		c.servers = ss
		return nil
	}
}

// Lifetime implements driver.Lifetimer with memcached's meta get of the
// item's remaining TTL ("mg <key> t", memcached 1.6 or later), to the
// second: memcached keeps expiry in whole seconds, so a key about to
// expire reports one second. It dials the key's server for every call
// (an operator's tool, not a hot path) and fails with ErrNoServerList on a
// Store built without WithServerList. Like every memcached answer it
// reflects the server that holds the key now: an evicted item is absent.
func (s *Store) Lifetime(ctx context.Context, key string) (time.Duration, error) {
	ikey, err := s.callKey("lifetime", key)
	if err != nil {
		return 0, err
	}
	if s.servers == nil {
		return 0, ErrNoServerList
	}
	if err := s.begin(ctx, "lifetime"); err != nil {
		return 0, err
	}
	var left time.Duration
	err = s.run(ctx, func() error {
		var err error
		left, err = s.metaTTL(ikey)
		return err
	})
	if err != nil {
		return 0, s.wrap(ctx, "lifetime", ikey, err)
	}
	return left, nil
}

// metaTTL asks the server that holds ikey for its remaining TTL.
func (s *Store) metaTTL(ikey string) (time.Duration, error) {
	addr, err := s.servers.PickServer(ikey)
	if err != nil {
		return 0, err
	}
	timeout := s.c.Timeout
	if timeout <= 0 {
		timeout = memcache.DefaultTimeout
	}
	conn, err := net.DialTimeout(addr.Network(), addr.String(), timeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := fmt.Fprintf(conn, "mg %s t\r\n", ikey); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	return parseMetaTTL(strings.TrimRight(line, "\r\n"))
}

// parseMetaTTL reads the reply to "mg <key> t": "HD t<seconds>" (t-1: no
// expiry) or "EN" for a miss.
func parseMetaTTL(line string) (time.Duration, error) {
	if line == "EN" {
		return 0, memcache.ErrCacheMiss
	}
	f := strings.Fields(line)
	if len(f) < 1 || f[0] != "HD" {
		return 0, fmt.Errorf("meta get answered %q; Lifetime needs memcached 1.6 or later", truncate(line, 60))
	}
	for _, flag := range f[1:] {
		v, ok := strings.CutPrefix(flag, "t")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 {
			return 0, fmt.Errorf("meta get answered a TTL of %q", truncate(v, 20))
		}
		if n == -1 {
			return driver.NoExpiry, nil
		}
		return time.Duration(max(n, 1)) * time.Second, nil
	}
	return 0, errors.New("meta get answered no TTL flag")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
