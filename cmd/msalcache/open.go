package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
)

// env is what a command works on: the store, and the ring when a KEK was
// given.
type env struct {
	a     *app
	store *storeurl.Store
	// ringStore is where the ring lives: store itself unless -ring-store.
	ringStore *storeurl.Store
	kek       protect.KeyWrapper // nil: no KEK given
	ring      *protect.KeyRing   // nil until openRing
	adapter   *msalcache.Adapter // for StoreKey; nil until keyer

	// extraKEKs are older KEKs that only unwrap (see loadKEKs).
	extraKEKs []protect.KeyWrapper
}

func (e *env) close() {
	if e.ring != nil {
		e.ring.Close()
	}
	if e.ringStore != nil && e.ringStore != e.store {
		e.ringStore.Close()
	}
	if e.store != nil {
		e.store.Close()
	}
}

// callCtx bounds one store call, and survives the command's
// cancellation, so that Ctrl-C never cuts a write in half: the loop
// checks the command's ctx between records instead.
func (a *app) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
}

// open opens -store (and -ring-store) and checks that it answers.
func (a *app) open(ctx context.Context) (*env, error) {
	if a.store == "" {
		return nil, usageError("no store: pass -store URL or set MSALCACHE_STORE (e.g. bbolt:///var/lib/app/tokens.db, redis://host:6379)")
	}
	e := &env{a: a}
	var err error
	if e.store, err = a.openURL(ctx, a.store); err != nil {
		return nil, err
	}
	e.ringStore = e.store
	if a.ringStore != "" && a.ringStore != a.store {
		if e.ringStore, err = a.openURL(ctx, a.ringStore); err != nil {
			e.store.Close()
			return nil, err
		}
	}
	if e.kek, e.extraKEKs, err = a.loadKEKs(ctx, e.ringStore); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (a *app) openURL(ctx context.Context, raw string) (*storeurl.Store, error) {
	var opts []storeurl.Option
	if a.prefixSet {
		opts = append(opts, storeurl.WithPrefix(a.prefix))
	}
	u, err := storeurl.Parse(raw)
	if err != nil {
		return nil, err
	}
	s, err := u.Open(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if p, ok := s.Store.(msalcache.Pinger); ok {
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		if err := p.Ping(cctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("store %s does not answer: %w (check the address, the password and that the server runs)", u, err)
		}
	}
	return s, nil
}

// loadKEK reads the KEK from -kek-file or the -kek-env variable; none
// given is not an error (a plaintext cache, or a command that needs no
// key).
func (a *app) loadKEK(ctx context.Context, ringStore *storeurl.Store, skipID string) (protect.KeyWrapper, error) {
	var key []byte
	var err error
	switch {
	case a.kekFile != "":
		if key, err = protect.LoadKeyFile(a.kekFile); err != nil {
			return nil, err
		}
	case os.Getenv(a.kekEnv) != "":
		if key, err = protect.KeyFromEnv(a.kekEnv); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	id := a.kekID
	if id == "" {
		if id, err = ringKEKID(ctx, a, ringStore, skipID); err != nil {
			return nil, err
		}
		if id == "" {
			return nil, nil
		}
	}
	return protect.NewAESKeyWrapper(id, key)
}

// ringKEKID reads the KEK id the ring record names (the record keeps ids
// in clear), so that an operator need not know it; skipID (another KEK
// given, such as -kek-cert's) is not counted.
func ringKEKID(ctx context.Context, a *app, s *storeurl.Store, skipID string) (string, error) {
	cctx, cancel := a.callCtx(ctx)
	defer cancel()
	b, _, err := s.Load(cctx, protect.DefaultRingKey)
	if errors.Is(err, msalcache.ErrNotFound) {
		// No ring to name one: any id does, and opening the ring
		// reports that there is none.
		return "none", nil
	}
	if err != nil {
		return "", fmt.Errorf("no -kek-id given and the ring's record cannot be read to find it (%w); pass -kek-id or set MSALCACHE_KEK_ID", err)
	}
	var rec struct {
		Keys []struct {
			KEK string `json:"kek"`
		} `json:"keys"`
	}
	if json.Unmarshal(b, &rec) != nil {
		return "", errors.New("no -kek-id given and the ring's record does not name one; pass -kek-id or set MSALCACHE_KEK_ID")
	}
	count := map[string]int{}
	for _, k := range rec.Keys {
		if k.KEK != skipID {
			count[k.KEK]++
		}
	}
	if len(count) == 0 && skipID != "" {
		return "", nil // every key is under the other KEK: this one is not needed
	}
	if len(count) != 1 {
		ids := make([]string, 0, len(count))
		for id := range count {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return "", fmt.Errorf("no -kek-id given and the ring's keys name %d KEK ids %q; pass -kek-id", len(ids), ids)
	}
	for id := range count {
		return id, nil
	}
	return "", nil
}

var quiet = slog.New(slog.DiscardHandler)

// openRing opens the ring read-only. It fails when no KEK was given.
func (e *env) openRing(ctx context.Context) (*protect.KeyRing, error) {
	if e.ring != nil {
		return e.ring, nil
	}
	if e.kek == nil {
		return nil, fmt.Errorf("no KEK: pass -kek-file PATH or -kek-cert PATH, or put the key in $%s (or name another variable with -kek-env)", e.a.kekEnv)
	}
	if msalcache.IsVolatile(e.ringStore.Store) {
		return nil, fmt.Errorf("%w: %s; name the ring's store with -ring-store", protect.ErrVolatileStore, e.ringStore.URL)
	}
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	r, err := protect.OpenReadOnly(cctx, e.ringStore.Store, e.kek, protect.WithLogger(quiet), protect.WithKEKs(e.extraKEKs...))
	if err != nil {
		return nil, fmt.Errorf("open the key ring in %s: %w", e.ringStore.URL, err)
	}
	e.ring = r
	return r, nil
}

// writableRing opens the ring for Rotate and Revoke. It first opens it
// read-only, so that a store that holds no ring (a wrong URL or prefix)
// is refused instead of getting a new ring.
func (e *env) writableRing(ctx context.Context) (*protect.KeyRing, error) {
	if _, err := e.openRing(ctx); err != nil {
		return nil, err
	}
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	r, err := protect.NewKeyRing(cctx, e.ringStore.Store, e.kek, protect.WithAutoRefresh(false), protect.WithLogger(quiet), protect.WithKEKs(e.extraKEKs...))
	if err != nil {
		return nil, fmt.Errorf("open the key ring in %s: %w", e.ringStore.URL, err)
	}
	return r, nil
}

// keyer returns an Adapter used only to name partitions as the servers
// do: keyed by the ring when there is a KEK, SHA-256 otherwise.
func (e *env) keyer(ctx context.Context) (*msalcache.Adapter, error) {
	if e.adapter != nil {
		return e.adapter, nil
	}
	opts := []msalcache.Option{msalcache.WithNamespace(e.a.namespace), msalcache.WithLogger(quiet)}
	if e.kek != nil {
		r, err := e.openRing(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, msalcache.WithProtector(r))
	} else {
		opts = append(opts, msalcache.WithPlaintext())
	}
	a, err := msalcache.New(e.store.Store, opts...)
	if err != nil {
		return nil, err
	}
	e.adapter = a
	return a, nil
}

// prefix is the store-key prefix of the namespace's partitions.
func (a *app) partitionPrefix() string { return "tc/" + a.namespace + "/" }

// listKeys lists the keys under prefix; a store that cannot list gets an
// error that says what to do instead.
func (e *env) listKeys(ctx context.Context, s *storeurl.Store, prefix string) ([]string, error) {
	l, ok := s.Store.(msalcache.Lister)
	if !ok {
		return nil, fmt.Errorf("%s cannot be listed: memcached has no reliable way to enumerate keys. Use rm -partition or inspect -partition for one user; to move off memcached, point the servers at the new store and let it fill from misses (one token request per user)", s.URL)
	}
	var keys []string
	err := l.List(ctx, prefix, func(k string) error {
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", s.URL, err)
	}
	sort.Strings(keys)
	return keys, nil
}

// lifetime returns key's remaining lifetime, or ok false when the store
// cannot tell.
func (e *env) lifetime(ctx context.Context, s *storeurl.Store, key string) (time.Duration, bool, error) {
	l, ok := s.Store.(msalcache.Lifetimer)
	if !ok {
		return 0, false, nil
	}
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	d, err := l.Lifetime(cctx, key)
	if errors.Is(err, errors.ErrUnsupported) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return d, true, nil
}

// load reads one key with a bounded, uncancelled call.
func (e *env) load(ctx context.Context, s *storeurl.Store, key string) ([]byte, msalcache.Version, error) {
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	return s.Load(cctx, key)
}

// progress reports a long loop on stderr when it is a terminal.
type progress struct {
	on    bool
	w     *os.File
	what  string
	total int
	start time.Time
	last  time.Time
}

func (a *app) progress(what string, total int) *progress {
	p := &progress{what: what, total: total, start: time.Now()}
	if f, ok := a.stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.on, p.w = true, f
		}
	}
	return p
}

func (p *progress) step(done int) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond && done < p.total {
		return
	}
	p.last = time.Now()
	el := time.Since(p.start).Seconds()
	rate := float64(done) / max(el, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r%s: %d/%d, %.0f/s, ETA %s   ", p.what, done, p.total, rate, eta)
}

// end ends the progress line, once: a command calls it before its
// summary and defers it for its error paths.
func (p *progress) end() {
	if p.on {
		fmt.Fprintln(p.w)
		p.on = false
	}
}

// errInterrupted says how far a loop got before Ctrl-C.
func interrupted(what string, done, total int) error {
	return fmt.Errorf("interrupted after %d of %d %s; every record is whole; run the command again to resume", done, total, what)
}

func printJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtLifetime(d time.Duration, known bool) string {
	switch {
	case !known:
		return "unknown"
	case d == msalcache.NoExpiry:
		return "none"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	default:
		return d.Round(time.Second).String()
	}
}
