// Package testserver starts real Redis (single node, cluster, sentinel) and
// memcached servers for tests, and stops them again when the test ends.
//
// The stores of this module are tested against real servers, never against
// mocks or in-process fakes: the behaviour that matters (MOVED/ASK redirects,
// failover, eviction, persistence, a server that stops answering) is exactly
// what fakes get wrong. Every server started here is a child process of the
// test binary:
//
//   - it listens on a free loopback port (127.0.0.1) picked at start; a start
//     that loses a port race ("Address already in use") is retried on another
//     port;
//   - its data directory and log file live in t.TempDir();
//   - it is started in the foreground (never daemonized), so the package holds
//     its pid; t.Cleanup stops it (SIGTERM, then SIGKILL after a short grace)
//     and waits for it to exit;
//   - on Linux it is started with Pdeathsig=SIGKILL, so it dies with the test
//     binary even if the binary itself is killed and no cleanup runs.
//
// A server is only handed to the test once it answers (PING/INFO for Redis,
// "version"/"stats" for memcached) and the answering process is the one that
// was started (its pid is checked), within a 10 s timeout; on failure the
// test fails with the tail of the server's log.
//
// # Missing binaries: skip or fail
//
// The servers are found in $PATH: redis-server (Debian package redis-server;
// sentinels run as redis-server --sentinel, and clusters are formed over
// RESP, so redis-cli is not needed) and memcached. When a binary is missing
// the test is skipped with a message telling how to install it
// (apt-get install redis-server memcached). CI sets MSALCACHE_REQUIRE_SERVERS=1,
// which turns the skip into a failure, so a CI image without the servers can
// never pass by silently skipping every integration test (see RequireServers).
// MSALCACHE_REDIS_SERVER names another binary to run instead of
// redis-server, a path or a name in $PATH: CI runs the redisstore suite on
// Valkey's valkey-server that way (see RedisServerEnv).
//
// The helpers are meant for the test goroutine: they report failures with
// t.Fatal, which must not be called from other goroutines.
package testserver
