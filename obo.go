package msalcache

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// On-behalf-of tokens through the store.
//
// MSAL-Go (v1.10.1) keeps on-behalf-of tokens in a partitioned manager of
// each client's own memory and cannot share them through its cache hook:
// that manager rejects every non-empty Unmarshal (upstream issue 455), and
// the on-behalf-of path exports the other manager. So each instance, and
// each client of a pool, would redeem the same incoming assertion again.
// ClientPool.AcquireTokenOnBehalfOf shares what can be shared safely: the
// access token. It keeps, per (assertion, client id, authority, scopes),
// one record in the store: the access token, its expiry and refresh time,
// the granted scopes and MSAL's account, sealed like every blob, named by
// a keyed hash (the Protector's KeyHasher, else SHA-256) of all four, and
// expiring when the token stops being usable. What is not shared: the
// refresh token MSAL may get with it (it stays in the memory of the client
// that redeemed the assertion), the ID token, and any call with options
// (WithClaims, WithTenantID...), which changes the token asked for in ways
// the key would not see: those go to MSAL alone.

// oboRefreshMargin is MSAL's: it does not serve an access token that
// expires within five minutes (storage.AccessToken.Validate).
const oboRefreshMargin = 5 * time.Minute

// oboRecordVersion is the format of oboRecord, stored in it.
const oboRecordVersion = 1

// oboRecord is what the store keeps of one on-behalf-of token.
type oboRecord struct {
	V             int                  `json:"v"`
	AccessToken   string               `json:"access_token"`
	ExpiresOn     time.Time            `json:"expires_on"`
	RefreshOn     time.Time            `json:"refresh_on,omitzero"`
	GrantedScopes []string             `json:"granted_scopes,omitempty"`
	Account       confidential.Account `json:"account"`
}

// usable reports whether MSAL itself would serve r at now.
func (r *oboRecord) usable(now time.Time) bool {
	return r.V == oboRecordVersion && r.AccessToken != "" &&
		r.ExpiresOn.After(now.Add(oboRefreshMargin)) &&
		(r.RefreshOn.IsZero() || now.Before(r.RefreshOn))
}

func (r *oboRecord) result() confidential.AuthResult {
	ar := confidential.AuthResult{
		Account:       r.Account,
		AccessToken:   r.AccessToken,
		ExpiresOn:     r.ExpiresOn,
		GrantedScopes: slices.Clone(r.GrantedScopes),
	}
	ar.Metadata.TokenSource = confidential.TokenSourceCache
	ar.Metadata.RefreshOn = r.RefreshOn
	return ar
}

// oboShare is a pool's state for on-behalf-of sharing.
type oboShare struct {
	once sync.Once
	// clientID and authority name the pool's clients in the record's key;
	// ok is false when they could not be read (sharing is then off).
	clientID, authority string
	ok                  bool

	mu      sync.Mutex
	flights map[string]*oboFlight // calls in progress, by store key
}

// oboFlight is one on-behalf-of call that others in this process with the
// same key wait for instead of redeeming the assertion again.
type oboFlight struct {
	done chan struct{}
	ar   confidential.AuthResult
	err  error
}

// clientIdentity reads the client id and the authority of an MSAL
// confidential client. MSAL-Go exports neither; they are read from its
// unexported fields (base.AuthParams.ClientID and AuthorityInfo.
// CanonicalAuthorityURI in v1.10.1), without writing anything. A version
// whose fields differ yields ok false, and on-behalf-of tokens are then
// simply not shared (TestPoolOBOIdentity fails on such an upgrade).
func clientIdentity(c confidential.Client) (clientID, authority string, ok bool) {
	field := func(v reflect.Value, name string) reflect.Value {
		if !v.IsValid() || v.Kind() != reflect.Struct {
			return reflect.Value{}
		}
		return v.FieldByName(name)
	}
	params := field(field(reflect.ValueOf(c), "base"), "AuthParams")
	id := field(params, "ClientID")
	auth := field(field(params, "AuthorityInfo"), "CanonicalAuthorityURI")
	if !id.IsValid() || id.Kind() != reflect.String || !auth.IsValid() || auth.Kind() != reflect.String {
		return "", "", false
	}
	clientID, authority = id.String(), auth.String()
	return clientID, authority, clientID != "" && authority != ""
}

// oboKey returns the store key of the on-behalf-of record for assertion
// and scopes, or "" when it cannot be shared.
func (p *ClientPool) oboKey(pc *pooledClient, assertion string, scopes []string) string {
	s := &p.obo
	s.once.Do(func() { s.clientID, s.authority, s.ok = clientIdentity(pc.c) })
	if !s.ok {
		return ""
	}
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var b strings.Builder
	for _, part := range []string{"msalcache on-behalf-of v1", s.clientID, strings.ToLower(s.authority), strings.Join(sorted, " "), assertion} {
		b.WriteString(part)
		b.WriteByte(0)
	}
	var sum [32]byte
	if p.a.hasher != nil {
		sum = p.a.hasher.HashKey(b.String())
	} else {
		sum = sha256.Sum256([]byte(b.String()))
	}
	return p.a.keyPrefix + "obo." + base64.RawURLEncoding.EncodeToString(sum[:])
}

// AcquireTokenOnBehalfOf returns a token for a downstream API on behalf of
// the user whose token (userAssertion) the app received, as
// client.AcquireTokenOnBehalfOf does, sharing it with every instance of the
// app: a token another instance got for the same assertion and scopes is
// served from the store, with no token request, as long as MSAL itself
// would serve it (more than five minutes before expiry, before its refresh
// time). It is sealed like every blob and expires from the store when it
// stops being usable. Calls with options (claims, another tenant) are not
// shared: they go to MSAL, which keeps their tokens in the client's memory.
// A store that fails is a miss: the call goes to MSAL.
func (p *ClientPool) AcquireTokenOnBehalfOf(ctx context.Context, userAssertion string, scopes []string, opts ...confidential.AcquireOnBehalfOfOption) (confidential.AuthResult, error) {
	if len(opts) > 0 || userAssertion == "" {
		var ar confidential.AuthResult
		err := p.call(ctx, "", callOnBehalfOf, func(c confidential.Client) (string, error) {
			var err error
			ar, err = c.AcquireTokenOnBehalfOf(ctx, userAssertion, scopes, opts...)
			return "", err
		})
		return ar, err
	}
	pc, err := p.get(ctx, "")
	if err != nil {
		return confidential.AuthResult{}, err
	}
	key := p.oboKey(pc, userAssertion, scopes)
	if key == "" {
		defer p.put(pc, "")
		pc.cache.kind = callOnBehalfOf
		return pc.c.AcquireTokenOnBehalfOf(ctx, userAssertion, scopes)
	}
	p.put(pc, "") // the store may serve it; a call that needs MSAL takes a client again
	for {
		if ar, v, ok := p.a.loadOBO(ctx, key); ok {
			return ar, nil
		} else if f, leader := p.obo.join(key); leader {
			f.ar, f.err = p.redeem(ctx, key, v, userAssertion, scopes)
			p.obo.land(key, f)
			return f.ar, f.err
		} else {
			select {
			case <-f.done:
			case <-ctx.Done():
				return confidential.AuthResult{}, ctx.Err()
			}
			if f.err == nil {
				return f.ar, nil
			}
			// The leader failed (its ctx, perhaps): try for ourselves.
		}
	}
}

// join returns key's flight, starting one (leader) when none is under way.
func (s *oboShare) join(key string) (f *oboFlight, leader bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flights[key]; f != nil {
		return f, false
	}
	if s.flights == nil {
		s.flights = make(map[string]*oboFlight)
	}
	f = &oboFlight{done: make(chan struct{})}
	s.flights[key] = f
	return f, true
}

// land ends key's flight f.
func (s *oboShare) land(key string, f *oboFlight) {
	s.mu.Lock()
	delete(s.flights, key)
	s.mu.Unlock()
	close(f.done)
}

// redeem asks MSAL for the token on a pooled client (the one that last
// served key, which may hold it in memory) and stores it under key, over
// version v (what loadOBO saw).
func (p *ClientPool) redeem(ctx context.Context, key string, v driver.Version, assertion string, scopes []string) (confidential.AuthResult, error) {
	var ar confidential.AuthResult
	err := p.call(ctx, key, callOnBehalfOf, func(c confidential.Client) (string, error) {
		var err error
		ar, err = c.AcquireTokenOnBehalfOf(ctx, assertion, scopes)
		return "", err
	})
	if err == nil {
		p.a.saveOBO(ctx, key, v, &ar)
	}
	return ar, err
}

// loadOBO returns the on-behalf-of token stored under key when MSAL would
// serve it, and the version seen (NoVersion when absent or unknown).
func (a *Adapter) loadOBO(ctx context.Context, key string) (confidential.AuthResult, driver.Version, bool) {
	if a.brk.isOpen(key) {
		return confidential.AuthResult{}, driver.NoVersion, false
	}
	dctx, cancel := a.bound(ctx, key)
	defer cancel()
	blob, v, err := a.load(dctx, key)
	switch {
	case errors.Is(err, driver.ErrNotFound):
		return confidential.AuthResult{}, driver.NoVersion, false
	case err != nil:
		if ctx.Err() == nil {
			a.storeFailed(ctx, "obo", key, err)
			a.log(ctx, slog.LevelWarn, "on-behalf-of: store failed; asking MSAL", "obo", key, errAttr(err))
		}
		return confidential.AuthResult{}, driver.NoVersion, false
	}
	plain, err := a.open(dctx, blob, key)
	if err != nil {
		a.log(ctx, slog.LevelWarn, "on-behalf-of: cannot decrypt the stored token; asking MSAL", "obo", key, errAttr(err))
		return confidential.AuthResult{}, v, false
	}
	var r oboRecord
	if err := json.Unmarshal(plain, &r); err != nil {
		a.log(ctx, slog.LevelWarn, "on-behalf-of: stored token is not in this version's format; asking MSAL", "obo", key, errAttr(errOBOFormat))
		return confidential.AuthResult{}, v, false
	}
	if !r.usable(a.cfg.now()) {
		return confidential.AuthResult{}, v, false
	}
	return r.result(), v, true
}

// errOBOFormat stands in, in logs, for a JSON error that may quote stored data.
var errOBOFormat = errors.New("not an on-behalf-of record")

// saveOBO stores ar under key, replacing version v, for as long as MSAL
// would serve it. Failing to store costs only sharing: it is logged.
func (a *Adapter) saveOBO(ctx context.Context, key string, v driver.Version, ar *confidential.AuthResult) {
	r := oboRecord{
		V:             oboRecordVersion,
		AccessToken:   ar.AccessToken,
		ExpiresOn:     ar.ExpiresOn,
		RefreshOn:     ar.Metadata.RefreshOn,
		GrantedScopes: ar.GrantedScopes,
		Account:       ar.Account,
	}
	now := a.cfg.now()
	ttl := r.ExpiresOn.Sub(now) - oboRefreshMargin
	if !r.RefreshOn.IsZero() {
		ttl = min(ttl, r.RefreshOn.Sub(now))
	}
	if ttl <= 0 || a.brk.isOpen(key) || ctx.Err() != nil {
		return
	}
	plain, err := json.Marshal(&r)
	if err != nil {
		return
	}
	dctx, cancel := a.bound(ctx, key)
	defer cancel()
	sealed, err := a.seal(dctx, plain, key)
	if err != nil {
		a.log(ctx, slog.LevelWarn, "on-behalf-of: cannot seal the token; not shared", "obo", key, errAttr(err))
		return
	}
	if _, err := a.save(dctx, key, sealed, v, ttl); err != nil && !errors.Is(err, driver.ErrConflict) {
		// A conflict: another instance stored one first, as good as ours.
		a.storeFailed(ctx, "obo", key, err)
		a.log(ctx, slog.LevelWarn, "on-behalf-of: could not store the token; not shared", "obo", key, errAttr(err))
	}
}
