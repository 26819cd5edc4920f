package memcachestore_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/bradfitz/gomemcache/memcache"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/faultnet"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/memcachestore"
)

// One memcached server of two is black-holed on the wire (it accepted the
// connections and answers nothing): every token call succeeds, none waits
// longer than the Adapter's timeout, the breaker opens for that server
// only, and the other server keeps serving its share of the tenants.
func TestWireFaultOneServerBlackHoled(t *testing.T) {
	const tenants = 12
	const timeout = 500 * time.Millisecond
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	hole := &faultnet.Wire{}
	var servers memcache.ServerList
	if err := servers.SetServers(mc1.Addr(), mc2.Addr()); err != nil {
		t.Fatal(err)
	}
	client := memcache.NewFromSelector(&servers)
	client.Timeout = 300 * time.Millisecond
	client.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == mc1.Addr() {
			return hole.DialContext(ctx, network, addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	t.Cleanup(func() { client.Close() })
	store := memcachestore.New(client, memcachestore.WithServerList(&servers))
	a, err := msalcache.New(store, msalcache.WithPlaintext(), msalcache.WithTimeout(timeout),
		msalcache.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	entra := entratest.NewServer()
	defer entra.Close()
	cred, _ := confidential.NewCredFromSecret("secret")
	appToken := func(i int) error {
		c, err := confidential.New(entra.Authority(fmt.Sprintf("tenant-%d", i)), "farm-client", cred,
			confidential.WithHTTPClient(entra.Client()), confidential.WithInstanceDiscovery(false), confidential.WithCache(a))
		if err != nil {
			return err
		}
		_, err = c.AcquireTokenByCredential(context.Background(), []string{"api://backend/.default"})
		return err
	}
	for i := range tenants {
		if err := appToken(i); err != nil {
			t.Fatal(err)
		}
	}
	hole.Set(faultnet.BlackHole, false)
	entra.ResetCounters()
	var took []time.Duration
	var perRound []int
	for round := range 3 {
		before := entra.TokenRequests()
		for i := range tenants {
			start := time.Now()
			if err := appToken(i); err != nil {
				t.Fatalf("round %d, tenant-%d with one server black-holed: %v", round, i, err)
			}
			took = append(took, time.Since(start))
		}
		perRound = append(perRound, entra.TokenRequests()-before)
	}
	slices.Sort(took)
	if worst := took[len(took)-1]; worst > timeout+250*time.Millisecond {
		t.Fatalf("a token call took %v with one server black-holed; none may wait longer than the %v timeout", worst, timeout)
	}
	refetched := entra.TokenRequests()
	st := a.Stats()
	t.Logf("one of two servers black-holed: %d calls, 0 failed, p50 %v, p99 %v, max %v; token requests per round of %d tenants %v; breaker trips %d",
		len(took), took[len(took)/2].Round(10*time.Microsecond), took[max(len(took)*99/100-1, 0)].Round(10*time.Microsecond),
		took[len(took)-1].Round(time.Millisecond), tenants, perRound, st.BreakerTrips)
	// The tenants of the other server are served by it every round. A
	// tenant on the black-holed server buys its token once: the breaker
	// keeps that write for the server's return, and a new client of the
	// tenant is served what it kept, with no token request, afterwards.
	if n := perRound[0]; n == 0 || n >= tenants {
		t.Fatalf("round 0: %d token requests for %d tenants (all rounds %v, %d in all): want the black-holed server's share only", n, tenants, perRound, refetched)
	}
	for round, n := range perRound[1:] {
		if n != 0 {
			t.Fatalf("round %d: %d token requests (all rounds %v): the writes kept for the black-holed server should serve its tenants", round+1, n, perRound)
		}
	}
	if st.BreakerTrips != 1 || !st.BreakerOpen {
		t.Fatalf("%+v: want the breaker open once, for the black-holed server", st)
	}
}
