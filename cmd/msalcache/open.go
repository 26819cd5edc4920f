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

// open opens -store (and -ring-store) and checks that it answers. A
// command that only reads passes writes false: a bbolt file is then
// opened read-only, and a missing one is an error instead of a new file.
// The KEK is read first, so that a problem with it is reported as one
// (errKEK) before any store is touched.
func (a *app) open(ctx context.Context, writes bool) (*env, error) {
	if a.store == "" {
		return nil, usageError("no store: pass -store URL or set MSALCACHE_STORE (e.g. bbolt:///var/lib/app/tokens.db, redis://host:6379)")
	}
	key, err := a.readKEK()
	if err != nil {
		return nil, err
	}
	e := &env{a: a}
	if e.store, err = a.openURL(ctx, a.store, writes); err != nil {
		return nil, err
	}
	e.ringStore = e.store
	if a.ringStore != "" && a.ringStore != a.store {
		if e.ringStore, err = a.openURL(ctx, a.ringStore, writes); err != nil {
			e.store.Close()
			return nil, err
		}
	}
	if e.kek, e.extraKEKs, err = a.loadKEKs(ctx, key, e.ringStore); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (a *app) openURL(ctx context.Context, raw string, writes bool) (*storeurl.Store, error) {
	var opts []storeurl.Option
	if a.prefixSet {
		opts = append(opts, storeurl.WithPrefix(a.prefix))
	}
	u, err := storeurl.Parse(raw)
	if err != nil {
		return nil, err
	}
	var s *storeurl.Store
	if u.Kind == storeurl.Bolt && !writes {
		s, err = openBoltReadOnly(u, a.prefixSet && a.prefix != "")
	} else {
		s, err = u.Open(ctx, opts...)
	}
	if err != nil {
		return nil, err
	}
	if p, ok := s.Store.(driver.Pinger); ok {
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		if err := p.Ping(cctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("store %s does not answer: %w (check the address, the password and that the server runs)", u, err)
		}
	}
	return s, nil
}

// errKEK marks a problem with the KEK itself (its file, its encoding, a
// key that does not unwrap the ring), as opposed to one with the store:
// the operator fixes it in another place.
var errKEK = errors.New("KEK problem")

// kekError is a problem with the KEK; it wraps errKEK and its cause.
type kekError struct{ err error }

func (e *kekError) Error() string   { return "KEK problem: " + e.err.Error() }
func (e *kekError) Unwrap() []error { return []error{errKEK, e.err} }

// readKEK reads the KEK from -kek-file or the -kek-env variable; none
// given is not an error (a plaintext cache, or a command that needs no
// key). Its errors are KEK problems.
func (a *app) readKEK() ([]byte, error) {
	switch {
	case a.skipKEK:
		return nil, nil
	case a.kekFile != "":
		key, err := protect.LoadKeyFile(a.kekFile)
		if err != nil {
			return nil, &kekError{fmt.Errorf("-kek-file: %w", err)}
		}
		return key, nil
	case os.Getenv(a.kekEnv) != "":
		key, err := protect.KeyFromEnv(a.kekEnv)
		if err != nil {
			return nil, &kekError{fmt.Errorf("$%s: %w", a.kekEnv, err)}
		}
		return key, nil
	}
	return nil, nil
}

// kekWrapper names key with -kek-id, or with the id the ring names
// (skipID, another KEK given, such as -kek-cert's, aside).
func (a *app) kekWrapper(ctx context.Context, key []byte, ringStore *storeurl.Store, skipID string) (protect.KeyWrapper, error) {
	id := a.kekID
	if id == "" {
		var err error
		if id, err = ringKEKID(ctx, a, ringStore, skipID); err != nil {
			return nil, err
		}
		if id == "" {
			return nil, nil
		}
	}
	w, err := protect.NewAESKeyWrapper(id, key)
	if err != nil {
		return nil, &kekError{err}
	}
	return w, nil
}

// ringKEKID reads the KEK id the ring record names (the record keeps ids
// in clear), so that an operator need not know it; skipID (another KEK
// given, such as -kek-cert's) is not counted.
func ringKEKID(ctx context.Context, a *app, s *storeurl.Store, skipID string) (string, error) {
	cctx, cancel := a.callCtx(ctx)
	defer cancel()
	b, _, err := s.Load(cctx, protect.DefaultRingKey)
	if errors.Is(err, driver.ErrNotFound) {
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
	if driver.IsVolatile(e.ringStore.Store) {
		return nil, fmt.Errorf("%w: %s; name the ring's store with -ring-store", protect.ErrVolatileStore, e.ringStore.URL)
	}
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	r, err := protect.OpenReadOnly(cctx, e.ringStore.Store, e.kek, protect.WithLogger(quiet), protect.WithKEKs(e.extraKEKs...))
	if err != nil {
		if kerr := e.diagnoseKEK(ctx, err); kerr != nil {
			return nil, kerr
		}
		return nil, fmt.Errorf("open the key ring in %s: %w", e.ringStore.URL, err)
	}
	e.ring = r
	return r, nil
}

// diagnoseKEK tells a wrong KEK from a damaged ring record, which the
// ring reports alike (a wrap that does not authenticate): when the record
// is whole JSON whose keys name the KEK's id, the KEK is far likelier
// wrong than the record damaged, and the operator should hear that first
// and briefly. It returns nil when err is something else.
func (e *env) diagnoseKEK(ctx context.Context, err error) error {
	if !errors.Is(err, protect.ErrInvalidRing) {
		return nil
	}
	b, _, lerr := e.load(ctx, e.ringStore, protect.DefaultRingKey)
	if lerr != nil {
		return nil
	}
	var rec struct {
		Keys []struct {
			KEK     string `json:"kek"`
			Wrapped []byte `json:"wrapped"`
		} `json:"keys"`
	}
	if json.Unmarshal(b, &rec) != nil || len(rec.Keys) == 0 {
		return nil
	}
	ids := map[string]bool{}
	for _, k := range rec.Keys {
		if k.KEK == "" || len(k.Wrapped) == 0 {
			return nil // not whole: damage, not a KEK problem
		}
		ids[k.KEK] = true
	}
	id := e.kek.ID()
	if ids[id] {
		return &kekError{fmt.Errorf("this KEK does not unwrap the key ring: wrong key for KEK id %q? Compare %s with the servers' KEK (if it is theirs, the ring record is damaged: see 'msalcache doctor')", id, e.a.kekSource())}
	}
	names := make([]string, 0, len(ids))
	for k := range ids {
		names = append(names, k)
	}
	sort.Strings(names)
	return &kekError{fmt.Errorf("the key ring's keys are wrapped by KEK id %q, not %q: pass the servers' KEK and its id (-kek-id)", names, id)}
}

// kekSource names where the KEK came from, for messages.
func (a *app) kekSource() string {
	if a.kekFile != "" {
		return "-kek-file " + a.kekFile
	}
	return "$" + a.kekEnv
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
	l, ok := s.Store.(driver.Lister)
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
	l, ok := s.Store.(driver.Lifetimer)
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
func (e *env) load(ctx context.Context, s *storeurl.Store, key string) ([]byte, driver.Version, error) {
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
	case d == driver.NoExpiry:
		return "none"
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	default:
		return d.Round(time.Second).String()
	}
}
