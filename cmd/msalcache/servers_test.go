package main

import (
	"testing"

	"github.com/msalcache/msalcache/internal/testserver"
)

func redisServer(t *testing.T) string { return testserver.Redis(t).Addr() }

func redisWithPassword(t *testing.T, pw string) string {
	return testserver.Redis(t, testserver.RedisPassword(pw)).Addr()
}

func memcachedServer(t *testing.T) string { return testserver.Memcached(t).Addr() }
