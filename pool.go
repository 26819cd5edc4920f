package msalcache

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// defaultPoolSize is how many MSAL clients a ClientPool holds at most
// unless WithPoolSize says otherwise: poolClientsPerCPU per GOMAXPROCS, at
// least minPoolSize. A silent call is CPU work (MSAL parses the partition
// it is handed), and more of them at once than the CPUs can run only adds
// garbage and cache misses: in BenchmarkUsers (16 goroutines, 2 CPUs) a
// pool of 4 clients spent 0.6-0.8x the CPU per call of a pool that let all
// 16 run at once (docs/benchmarks.md). Calls that wait on the network (a
// sign-in, a refresh) hold a client for the round trip, so the bound
// leaves room for a few of them per CPU; an app whose token requests come
// in bursts raises it with WithPoolSize. Clients are built only when a
// call finds none idle, so a quiet app holds few.
func defaultPoolSize() int {
	return max(minPoolSize, poolClientsPerCPU*runtime.GOMAXPROCS(0))
}

const (
	poolClientsPerCPU = 4
	minPoolSize       = 8
)

// ClientPool hands each token call an MSAL confidential client that no
// other goroutine is using, and keeps those clients' caches in an Adapter.
//
// It is what a web app or a daemon that serves many users at once should
// use instead of one shared client or a client per request:
//
//   - One shared client serving many users at once cannot be made exact
//     through MSAL's cache hook: MSAL loads a user's partition under a read
//     lock and reads it after releasing the lock, so concurrent users swap
//     each other's data in between. The Adapter narrows that window by
//     lending recent partitions, at a cost that grows with the users in
//     flight, and calls still fail under load (Stats.LendingOverflows
//     counts when they may).
//   - A client per request is exact, but MSAL-Go (v1.10.1) makes one
//     instance-discovery HTTP request per new client with its default
//     options (its metadata cache lives in the client), and the Adapter
//     tracks every such client for a few seconds, which costs heap under
//     sustained load.
//
// A pooled client serves one call at a time, so the Adapter hands it only
// the partition asked for and lends nothing, and a client that comes back
// for the same user usually still holds that user's partition, so nothing
// is decrypted or parsed. The pool builds its clients lazily through
// newClient, at most WithPoolSize of them; a call that finds them all busy
// waits until one is free or its ctx is done.
//
// The pool tells the Adapter which operation each call is (a silent call,
// a sign-in, a sign-out), which lets the Adapter tell a refresh that was in
// flight during a sign-out from a genuine new sign-in.
//
// On-behalf-of tokens are shared across instances through the store (see
// AcquireTokenOnBehalfOf); MSAL-Go cannot share them through its hook.
type ClientPool struct {
	a         *Adapter
	newClient func(c cache.ExportReplace) (confidential.Client, error)
	size      int
	// slots holds one value per call that holds (or is building) a client.
	slots chan struct{}

	mu   sync.Mutex
	all  []*pooledClient // every client built, for SignOut
	idle list.List       // *pooledClient, the longest idle first
	// holder maps a key to the client whose last call served it: MSAL's
	// memory in that client holds that key's partition (the Adapter hands
	// a pooled client only the partition asked for), so a call for the
	// same key on it reloads nothing.
	holder map[string]*pooledClient

	obo oboShare
}

// pooledClient is one MSAL client of a pool.
type pooledClient struct {
	c     confidential.Client
	cache *pooledCache
	elem  *list.Element // in ClientPool.idle while idle, else nil
	last  string        // the key its last call served, "" for none known
}

// pooledCache is the cache.ExportReplace a pooled client is built with: the
// pool's Adapter, told that the client serves one call at a time and which
// operation the current call is.
type pooledCache struct {
	a *Adapter
	// kind is set by the pool before it hands the client to a call, and
	// read only by that call's hook calls.
	kind callKind
	// reset asks the next Replace to forget what MSAL holds (ClientPool.SignOut
	// sets it on every client but the one that signed out).
	reset atomic.Bool
}

// Replace implements cache.ExportReplace.
func (c *pooledCache) Replace(ctx context.Context, u cache.Unmarshaler, hints cache.ReplaceHints) error {
	if u == nil {
		return errors.New("msalcache: Replace with a nil cache")
	}
	if c.reset.Load() && c.a.forgetClient(u) {
		c.reset.Store(false)
	}
	return c.a.replaceCall(ctx, u, hints, callInfo{exclusive: true, kind: c.kind})
}

// Export implements cache.ExportReplace.
func (c *pooledCache) Export(ctx context.Context, m cache.Marshaler, hints cache.ExportHints) error {
	return c.a.exportCall(ctx, m, hints, callInfo{exclusive: true, kind: c.kind})
}

// forgetClient makes the next Replace into MSAL cache target u reset it,
// whatever the store answers, as Remove does for the clients holding a
// removed partition. It reports false for MSAL's on-behalf-of manager,
// which holds no user's partition.
func (a *Adapter) forgetClient(u any) bool {
	cs := a.clientFor(u, callInfo{exclusive: true})
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.partitioned {
		return false
	}
	cs.resetLocked()
	return true
}

// PoolOption configures a ClientPool.
type PoolOption func(*poolConfig) error

type poolConfig struct {
	size int
}

// WithPoolSize sets the most clients the pool holds, and so the most calls
// it runs at once; callers past it wait for a client, bounded by their ctx.
// The default is 4 per GOMAXPROCS, at least 8: enough for the CPUs to stay
// busy with silent calls while a few calls wait on the token endpoint.
func WithPoolSize(n int) PoolOption {
	return func(c *poolConfig) error {
		if n < 1 {
			return fmt.Errorf("msalcache: WithPoolSize(%d): the pool needs at least one client", n)
		}
		c.size = n
		return nil
	}
}

// NewClientPool returns a pool of MSAL confidential clients whose caches
// a keeps. newClient builds one client; it must install c, the cache the
// pool hands it, with confidential.WithCache(c), and nothing else as the
// cache:
//
//	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
//		return confidential.New(authority, clientID, cred, confidential.WithCache(c))
//	})
//
// Every client should be built alike (same authority, client id and
// credential): the pool hands any of them to any call.
func NewClientPool(a *Adapter, newClient func(c cache.ExportReplace) (confidential.Client, error), opts ...PoolOption) (*ClientPool, error) {
	if a == nil || newClient == nil {
		return nil, errors.New("msalcache: NewClientPool: pass the Adapter and a function that builds a confidential client with confidential.WithCache(c)")
	}
	cfg := poolConfig{size: defaultPoolSize()}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &ClientPool{
		a:         a,
		newClient: newClient,
		size:      cfg.size,
		slots:     make(chan struct{}, cfg.size),
		holder:    make(map[string]*pooledClient),
	}, nil
}

// ErrPoolClient reports that the pool's newClient failed.
var ErrPoolClient = errors.New("msalcache: ClientPool: newClient failed")

// get returns an idle client, the one that last served key if it is idle,
// building one when none is and the pool has room; it waits for a client
// until ctx is done.
func (p *ClientPool) get(ctx context.Context, key string) (*pooledClient, error) {
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("msalcache: ClientPool: waiting for a free client (WithPoolSize %d): %w", p.size, ctx.Err())
		}
	}
	p.mu.Lock()
	var pc *pooledClient
	if cand := p.holder[key]; cand != nil && key != "" && cand.elem != nil {
		pc = cand
	}
	if pc == nil && p.idle.Len() > 0 {
		pc = p.idle.Front().Value.(*pooledClient)
	}
	if pc != nil {
		p.idle.Remove(pc.elem)
		pc.elem = nil
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()
	// Room for one more: holding a slot with no idle client means fewer
	// than size clients exist.
	pc = &pooledClient{cache: &pooledCache{a: p.a}}
	c, err := p.newClient(pc.cache)
	if err != nil {
		<-p.slots
		return nil, fmt.Errorf("%w: %w", ErrPoolClient, err)
	}
	pc.c = c
	p.mu.Lock()
	p.all = append(p.all, pc)
	p.mu.Unlock()
	return pc, nil
}

// put gives pc back, as the client that last served key ("" for none).
func (p *ClientPool) put(pc *pooledClient, key string) {
	pc.cache.kind = callUnknown
	p.mu.Lock()
	if p.holder[pc.last] == pc {
		delete(p.holder, pc.last)
	}
	pc.last = key
	if key != "" {
		p.holder[key] = pc
	}
	pc.elem = p.idle.PushBack(pc)
	p.mu.Unlock()
	<-p.slots
}

// call runs f on a client of the pool, telling the Adapter that its hook
// calls are of kind, and remembering that the client served key, or the
// key f returns when it learns one (a sign-in learns whom it signed in).
func (p *ClientPool) call(ctx context.Context, key string, kind callKind, f func(c confidential.Client) (string, error)) error {
	pc, err := p.get(ctx, key)
	if err != nil {
		return err
	}
	served := ""
	defer func() { p.put(pc, served) }()
	pc.cache.kind = kind
	learned, err := f(pc.c)
	served = key
	if learned != "" {
		served = learned
	}
	return err
}

// Do runs f with a client of the pool that no other goroutine uses until f
// returns; f must not keep the client after that. key names what f works
// on, a user's home account id usually: the pool prefers the idle client
// that last served that key, which most likely still holds its tokens in
// memory. An empty key takes any idle client. Do waits for a client until
// ctx is done, and returns f's error.
//
// The pool's own methods are Do with the right key for each MSAL call;
// use Do for the calls they do not cover (AcquireTokenByUsernamePassword,
// AcquireTokenSilent with options of your own, AllAccounts...).
func (p *ClientPool) Do(ctx context.Context, key string, f func(ctx context.Context, c confidential.Client) error) error {
	if f == nil {
		return errors.New("msalcache: ClientPool.Do: f is nil")
	}
	return p.call(ctx, key, callUnknown, func(c confidential.Client) (string, error) {
		return "", f(ctx, c)
	})
}

// ErrNoAccount is returned by ClientPool.AcquireTokenSilent when no
// instance sharing the store holds the account any more (it signed out, or
// its sign-in expired): sign the user in again.
var ErrNoAccount = errors.New("msalcache: no cached account for this home account id: sign the user in again")

// AcquireTokenSilent returns a token for the user homeAccountID (the
// account's HomeAccountID, which a web app keeps in its session) from the
// cache, refreshing it with the user's refresh token when needed. It is
// client.Account followed by client.AcquireTokenSilent with
// confidential.WithSilentAccount, on one pooled client. It returns an
// error wrapping ErrNoAccount when no instance holds the user any more.
func (p *ClientPool) AcquireTokenSilent(ctx context.Context, homeAccountID string, scopes []string, opts ...confidential.AcquireSilentOption) (confidential.AuthResult, error) {
	var ar confidential.AuthResult
	if homeAccountID == "" {
		return ar, fmt.Errorf("msalcache: ClientPool.AcquireTokenSilent: empty home account id: %w", ErrNoAccount)
	}
	err := p.call(ctx, homeAccountID, callSilent, func(c confidential.Client) (string, error) {
		acct, err := c.Account(ctx, homeAccountID)
		if err != nil {
			return "", err
		}
		if acct.HomeAccountID == "" {
			return "", ErrNoAccount
		}
		all := make([]confidential.AcquireSilentOption, 0, len(opts)+1)
		all = append(all, opts...)
		all = append(all, confidential.WithSilentAccount(acct))
		ar, err = c.AcquireTokenSilent(ctx, scopes, all...)
		return "", err
	})
	return ar, err
}

// AcquireTokenByAuthCode redeems an authorization code, as
// client.AcquireTokenByAuthCode does: a sign-in. The user's tokens are
// stored and shared, even when the user signed out a moment before.
func (p *ClientPool) AcquireTokenByAuthCode(ctx context.Context, code, redirectURI string, scopes []string, opts ...confidential.AcquireByAuthCodeOption) (confidential.AuthResult, error) {
	var ar confidential.AuthResult
	err := p.call(ctx, "", callSignIn, func(c confidential.Client) (string, error) {
		var err error
		ar, err = c.AcquireTokenByAuthCode(ctx, code, redirectURI, scopes, opts...)
		return ar.Account.HomeAccountID, err
	})
	return ar, err
}

// poolAppKey is the pool's key for the app's own tokens (client credentials).
const poolAppKey = "\x00app"

// AcquireTokenByCredential returns a token for the app itself, as
// client.AcquireTokenByCredential does, from the shared cache when it
// holds one.
func (p *ClientPool) AcquireTokenByCredential(ctx context.Context, scopes []string, opts ...confidential.AcquireByCredentialOption) (confidential.AuthResult, error) {
	var ar confidential.AuthResult
	err := p.call(ctx, poolAppKey, callSignIn, func(c confidential.Client) (string, error) {
		var err error
		ar, err = c.AcquireTokenByCredential(ctx, scopes, opts...)
		return "", err
	})
	return ar, err
}

// AuthCodeURL returns the URL to send a user to for sign-in, as
// client.AuthCodeURL does.
func (p *ClientPool) AuthCodeURL(ctx context.Context, clientID, redirectURI string, scopes []string, opts ...confidential.AuthCodeURLOption) (string, error) {
	var u string
	err := p.call(ctx, "", callUnknown, func(c confidential.Client) (string, error) {
		var err error
		u, err = c.AuthCodeURL(ctx, clientID, redirectURI, scopes, opts...)
		return "", err
	})
	return u, err
}

// Account returns MSAL's account for homeAccountID, as client.Account
// does: the zero Account when no instance holds the user.
func (p *ClientPool) Account(ctx context.Context, homeAccountID string) (confidential.Account, error) {
	var acct confidential.Account
	err := p.call(ctx, homeAccountID, callSilent, func(c confidential.Client) (string, error) {
		var err error
		acct, err = c.Account(ctx, homeAccountID)
		return "", err
	})
	return acct, err
}

// SignOut signs the user homeAccountID out of every instance sharing the
// pool's store, as msalcache.SignOut does: MSAL's RemoveAccount on a pooled
// client, then Adapter.Remove of the user's partition. Every other client
// of the pool also drops what it held of the user before its next call,
// even if the store is unreachable then. The errors are those of SignOut.
func (p *ClientPool) SignOut(ctx context.Context, homeAccountID string) error {
	if homeAccountID == "" {
		return ErrNoAccountID
	}
	pc, err := p.get(ctx, homeAccountID)
	if err != nil {
		return err
	}
	pc.cache.kind = callSignOut
	acct, aerr := pc.c.Account(ctx, homeAccountID)
	err = SignOut(ctx, p.a, pc.c, acct, homeAccountID)
	if aerr != nil {
		err = errors.Join(fmt.Errorf("msalcache: SignOut: find the account: %w", aerr), err)
	}
	p.put(pc, "")
	p.mu.Lock()
	for _, o := range p.all {
		if o != pc {
			o.cache.reset.Store(true)
		}
	}
	p.mu.Unlock()
	return err
}

// lendingOverflow reports, for the Replace e into a shared client, that more
// partitions were in flight than the Adapter lends: counted (through e, as
// ReasonLendingOverflow) every time, logged once per Adapter.
func (a *Adapter) lendingOverflow(ctx context.Context, key string, e *observe.Event) {
	if e.Reason == observe.ReasonNone {
		e.Reason = observe.ReasonLendingOverflow
	}
	if a.lendWarned.CompareAndSwap(false, true) {
		a.log(ctx, slog.LevelWarn,
			"replace: one MSAL client serves more users at once than the cache can keep apart; its calls may fail with \"no token found\": use msalcache.ClientPool (counted in Stats.LendingOverflows, logged once)",
			"replace", key, slog.Int("max_lent", a.cfg.maxLent))
	}
}

// msalPackages is the import path prefix of MSAL-Go's packages.
const msalPackages = "github.com/AzureAD/microsoft-authentication-library-for-go/"

// forMSAL returns payload as MSAL-Go's own cache u reads it fastest (see
// msalFriendly); any other Unmarshaler (a test's stand-in, a wrapper) gets
// payload as it is.
func forMSAL(u any, payload []byte) []byte {
	t := reflect.TypeOf(u)
	if t == nil {
		return payload
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !strings.HasPrefix(t.PkgPath(), msalPackages) {
		return payload
	}
	return msalFriendly(payload)
}

// msalFriendly returns the JSON cache b with a space before every ',', ':',
// '}' and ']' that follows a string, number or literal, which changes
// nothing of its meaning and a good deal of what MSAL-Go pays to read it:
// MSAL-Go (v1.10.1) decodes its cache token by token with an
// encoding/json Decoder, which learns that a scalar ended only from the
// byte after it, and builds (then drops) an error with a quoted character
// for every such byte that is not a space. On a 5 KB user partition that
// is about a fifth of MSAL's Unmarshal. b is not modified.
func msalFriendly(b []byte) []byte {
	var out []byte // nil until the first space is inserted
	last := 0      // b[last:i] is not copied to out yet
	scalar := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			// Skip the string: its closing quote is the first one not
			// escaped by an odd number of backslashes.
			j := i + 1
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return b // not JSON: MSAL will say so
				}
				j += k
				n := 0
				for p := j - 1; p > i && b[p] == '\\'; p-- {
					n++
				}
				if n%2 == 0 {
					break
				}
				j++
			}
			i, scalar = j, true
		case ',', ':', '}', ']':
			if scalar {
				if out == nil {
					out = make([]byte, 0, len(b)+len(b)/16+16)
				}
				out = append(append(out, b[last:i]...), ' ')
				last = i
			}
			scalar = false
		case ' ', '\t', '\n', '\r', '{', '[':
			scalar = false
		default: // a number or a literal
			scalar = true
		}
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}
