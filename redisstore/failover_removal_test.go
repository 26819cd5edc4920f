package redisstore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/redis/go-redis/v9"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/internal/wait"
	"github.com/msalcache/msalcache/redisstore"
)

// Issue 20: what the soak showed after its Sentinel failover. Users
// signed out in the second before the promotion went on being served by
// every instance until the end: their removal records stood on the old
// master only, and the promoted replica held their partitions as they were
// before the sign-out. The instance that signed them out re-asserted, when
// its watch came back, only the removals whose key the new master did not
// hold at all, so it left these alone. Here the replica is frozen while
// the user signs out, and its link dropped, so that the record stays on
// the master (no replica confirms it: SignOut still returns nil, the
// record is on the master, as a removal made on the old master during a
// failover is), and the
// master is then killed, so that the sentinels promote the replica, which
// holds the partition but not its removal. The Adapter must store the
// removal again on the new master.
func TestRemovalLostByFailoverIsReasserted(t *testing.T) {
	st := testserver.RedisSentinel(t)
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: st.MasterName(), SentinelAddrs: st.SentinelAddrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { fc.Close() })
	store := redisstore.New(fc)
	a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithTimeout(500*time.Millisecond),
		msalcache.WithL1(msalcache.L1Options{}), msalcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	entra := entratest.NewServer()
	t.Cleanup(entra.Close)
	client, err := newFarmClient(entra, "contoso", a)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := entra.AddUser("contoso", "alice@contoso.example", "pw")
	if _, err := client.AcquireTokenByAuthCode(ctx, entra.AuthCode("contoso", alice.Username), farmRedirect, []string{userScope}); err != nil {
		t.Fatal(err)
	}
	key := a.StoreKey(alice.HomeAccountID)
	master, replica := st.Master(), st.Replica()
	mc := newClient(t, &redis.Options{Addr: master.Addr()})
	onMaster := redisstore.New(mc)
	onReplica := redisstore.New(newClient(t, &redis.Options{Addr: replica.Addr()}))
	// holds reports whether s holds alice's partition (removed: her
	// removal record).
	holds := func(s *redisstore.Store, removed bool) bool {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		blob, _, err := s.Load(lctx, key)
		return err == nil && msalcache.IsRemovalRecord(blob) == removed
	}
	wait.For(t, "the replica holds alice's partition", func() bool { return holds(onReplica, false) })
	// The watch must be up before the failover, to see it: the store has
	// one subscription, and a second watcher hears Up when the Adapter's
	// did.
	up := make(chan struct{}, 1)
	stop, err := store.Watch(ctx, func(c driver.Change) {
		if c.Kind == driver.ChangeWatchUp {
			select {
			case up <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-up:
	case <-time.After(wait.Default):
		t.Fatal("the watch did not come up")
	}

	// Frozen, the replica cannot reconnect once the master drops its
	// link, so the removal stays in the master's backlog, which dies
	// with it.
	replica.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			replica.Thaw()
		}
	}()
	if err := mc.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	acct, err := client.Account(ctx, alice.HomeAccountID)
	if err != nil {
		t.Fatal(err)
	}
	if err := msalcache.SignOut(ctx, a, client, acct, alice.HomeAccountID); err != nil {
		t.Fatalf("SignOut with the replica frozen: %v (the record is on the master: nil expected)", err)
	}
	if !holds(onMaster, true) {
		t.Fatal("the master does not hold alice's removal record after SignOut")
	}
	master.Kill()
	replica.Thaw()
	thawed = true
	if !holds(onReplica, false) {
		t.Fatal("the replica received the removal: the scenario did not happen")
	}

	// The sentinels promote the replica (down-after 1 s); the watch comes
	// back on it and the Adapter re-asserts the removal.
	wait.For(t, "the promoted replica holds alice's removal record", func() bool { return holds(onReplica, true) })
	// And no client of this farm serves her.
	fresh, err := newFarmClient(entra, "contoso", a)
	if err != nil {
		t.Fatal(err)
	}
	if acct, err := fresh.Account(ctx, alice.HomeAccountID); err == nil && acct.HomeAccountID != "" {
		if _, err := fresh.AcquireTokenSilent(ctx, []string{userScope}, confidential.WithSilentAccount(acct)); err == nil {
			t.Fatal("a fresh client served alice after her removal was re-asserted")
		}
	}
}
