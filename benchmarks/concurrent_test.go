package benchmarks

import (
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/entratest"
)

// concurrentUsers sign in before a concurrent benchmark; its silent calls
// go to them in turn.
const concurrentUsers = 8

// concurrentPerCPU is the goroutines per GOMAXPROCS of the concurrent
// benchmarks: enough that several users' calls are in flight on one
// client at any moment, which is what breaks a naive accessor.
const concurrentPerCPU = 8

// BenchmarkSharedClient measures silent calls for concurrentUsers users
// from many goroutines at once through one confidential client shared by
// all of them, as a web app that builds its client once does: without an
// external cache (floor), and per store through the naive accessor and the
// Adapter. MSAL-Go loads a partition under a read lock and reads it after
// releasing the lock, so with the naive accessor concurrent users replace
// each other's partitions in between and calls fail with "no token found";
// the Adapter keeps the partitions of calls in flight loaded. The failed
// calls column counts them.
func BenchmarkSharedClient(b *testing.B) {
	shared := func(b *testing.B, acc cache.ExportReplace) { concurrentBench(b, acc, true) }
	b.Run("floor", func(b *testing.B) { shared(b, nil) })
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) { eachAccessor(b, bk.open(b), shared) })
	}
}

// BenchmarkClientPerCall is BenchmarkSharedClient with a new confidential
// client for every call, as apps do that build one per request: each call
// pays for building the client, and every accessor hands the new client
// the stored partition, so MSAL parses it every time. It has no floor: a new client without an external cache has
// no token to serve.
func BenchmarkClientPerCall(b *testing.B) {
	perCall := func(b *testing.B, acc cache.ExportReplace) { concurrentBench(b, acc, false) }
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) { eachAccessor(b, bk.open(b), perCall) })
	}
}

// concurrentBench signs concurrentUsers users in through accessor (nil: no
// external cache), then measures their silent calls from
// concurrentPerCPU goroutines per CPU, through the client that signed them
// in (shared) or a new one per call. A call that fails counts as failed,
// not as an error: that share is what the benchmark reports besides time.
// A call that returns another user's token fails the benchmark, whatever
// the accessor: no figure is worth a token leak.
func concurrentBench(b *testing.B, accessor cache.ExportReplace, shared bool) {
	srv := entratest.NewServer()
	defer srv.Close()
	signer := newClient(b, srv, accessor)
	users := make([]entratest.User, concurrentUsers)
	for i := range users {
		users[i] = signIn(b, srv, signer)
	}
	clientFor := func() (confidential.Client, error) { return signer, nil }
	if !shared {
		clientFor = func() (confidential.Client, error) { return clientOf(srv, accessor) }
	}
	// Token requests count from 0: the sign-ins belong to the figure.
	silentInTurn(b, srv, users, clientFor, 0)
}
