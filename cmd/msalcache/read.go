package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
	"github.com/redis/go-redis/v9"
)

type finding struct {
	Level  string `json:"level"` // ok, warn, fail, info
	Check  string `json:"check"`
	Detail string `json:"detail"`
	Action string `json:"action,omitempty"`
}

func runDoctor(ctx context.Context, a *app, args []string) error {
	fs := a.flags("doctor", "[-json]", "Checks the store and the key ring; each finding says what to do. Exit 1 if any check fails.")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	var out []finding
	add := func(level, check, detail, action string) {
		out = append(out, finding{level, check, detail, action})
	}
	// A bbolt file is checked before anything reads it: a damaged one
	// is a finding, not a crash.
	if damaged := doctorFiles(ctx, a, add); damaged {
		if _, err := a.readKEK(); err != nil {
			add("fail", "kek", err.Error(), kekAction)
		}
		return reportFindings(a, out, *asJSON)
	}
	e, err := a.open(ctx, false)
	if errors.Is(err, errKEK) {
		// The KEK first, then the store, checked without it.
		add("fail", "kek", err.Error(), kekAction)
		a.skipKEK = true
		e, err = a.open(ctx, false)
	}
	switch {
	case errors.Is(err, errUsage):
		return err
	case errors.Is(err, errNoFile):
		add("fail", "store", err.Error(), "point -store (or -ring-store) at the application's bbolt file")
		return reportFindings(a, out, *asJSON)
	case err != nil:
		add("fail", "store", err.Error(), "fix the URL, credentials or network, then run doctor again")
		return reportFindings(a, out, *asJSON)
	}
	defer e.close()
	if p, ok := e.store.Store.(driver.Pinger); ok {
		var lat []time.Duration
		for range 5 {
			cctx, cancel := a.callCtx(ctx)
			t0 := time.Now()
			err := p.Ping(cctx)
			cancel()
			if err != nil {
				add("fail", "ping", err.Error(), "check that the server runs and answers")
				break
			}
			lat = append(lat, time.Since(t0))
		}
		if len(lat) > 0 {
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			level, action := "ok", ""
			if lat[len(lat)/2] > 20*time.Millisecond {
				level, action = "warn", "every token call pays this round trip: put the store nearer the servers"
			}
			add(level, "latency", fmt.Sprintf("%s answers in %v (median of %d pings)", e.store.URL, lat[len(lat)/2].Round(time.Microsecond), len(lat)), action)
		}
	}
	if _, ok := e.store.Store.(driver.Lister); !ok {
		add("info", "list", "memcached cannot list its keys: stats, rewrap and migrate do not run on it", "inspect and rm work by -partition")
	}
	ringHere := false
	if cctx, cancel := a.callCtx(ctx); true {
		_, _, err := e.ringStore.Load(cctx, ringadmin.RingKey)
		cancel()
		ringHere = err == nil || errors.Is(err, driver.ErrCorrupt)
	}
	if driver.IsVolatile(e.ringStore.Store) && ringHere {
		add("fail", "ring-volatile", fmt.Sprintf("%s holds a key ring, and it may evict it at any time: every token would become unreadable", e.ringStore.URL),
			"keep the ring in bbolt or a persistent Redis (-ring-store), then migrate -ring or reset it")
	}
	if e.ringStore.Redis != nil {
		doctorRedis(ctx, a, e, ringHere, add)
	}
	doctorPostgresAll(ctx, a, e, add)
	switch {
	case e.kek == nil && ringHere:
		add("warn", "kek", "the store holds a key ring but no KEK was given, so the ring was not checked", "pass -kek-file or set MSALCACHE_KEK (and MSALCACHE_KEK_ID)")
	case e.kek == nil:
		add("info", "ring", "no key ring and no KEK: the cache is stored in clear (WithPlaintext) or not yet written", "")
	case driver.IsVolatile(e.ringStore.Store):
	default:
		doctorRing(ctx, e, add)
	}
	return reportFindings(a, out, *asJSON)
}

// doctorFiles runs bbolt's consistency check on the files of -store and
// -ring-store, read-only, and reports whether one is damaged. A missing
// file or a bad URL is left to open, which says so.
func doctorFiles(ctx context.Context, a *app, add func(level, check, detail, action string)) (damaged bool) {
	seen := map[string]bool{}
	for _, raw := range []string{a.store, a.ringStore} {
		u, err := storeurl.Parse(raw)
		if raw == "" || err != nil || u.Kind != storeurl.Bolt || seen[u.Path] {
			continue
		}
		seen[u.Path] = true
		if _, err := os.Stat(u.Path); err != nil {
			continue
		}
		var opts []boltstore.Option
		if u.Bucket != "" {
			opts = append(opts, boltstore.WithBucket(u.Bucket))
		}
		if u.LockTimeout > 0 {
			opts = append(opts, boltstore.WithLockTimeout(u.LockTimeout))
		}
		err = boltstore.Check(ctx, u.Path, opts...)
		switch {
		case err == nil:
			add("ok", "file", fmt.Sprintf("%s passes bbolt's consistency check", u.Path), "")
		case errors.Is(err, boltstore.ErrDamaged):
			damaged = true
			add("fail", "file", err.Error(), "stop the application, move the file aside and start it again (it makes a fresh one: each user's next call fetches a token again); keep the damaged copy for analysis")
		case errors.Is(err, boltstore.ErrLocked):
			add("info", "file", fmt.Sprintf("%s is open for writing by another process, so its consistency check was skipped", u.Path), "run doctor while the application is stopped to check the file")
		default:
			damaged = true
			add("fail", "file", err.Error(), "check the path and the file's permissions")
		}
	}
	return damaged
}

// kekAction is doctor's advice for a KEK that cannot be read.
const kekAction = "fix -kek-file (mode 0600, 32 random bytes as base64 or hex) or $MSALCACHE_KEK (-kek-env), then run doctor again"

// redisNode is what doctor reads of one Redis server.
type redisNode struct {
	addr      string // "" for the one server of a single or Sentinel URL
	aof, save string
	err       error
	skew      time.Duration
	clock     bool
}

// readRedisNode reads one server's persistence settings and clock.
func readRedisNode(ctx context.Context, c redis.Cmdable, addr string) redisNode {
	n := redisNode{addr: addr}
	if cfg, err := c.ConfigGet(ctx, "appendonly").Result(); err == nil {
		n.aof = cfg["appendonly"]
	} else {
		n.err = err
	}
	if cfg, err := c.ConfigGet(ctx, "save").Result(); err == nil {
		n.save = cfg["save"]
	} else if info, err := c.Info(ctx, "persistence").Result(); err == nil {
		// CONFIG may be renamed away (managed Redis): INFO still tells.
		n.err = nil
		if strings.Contains(info, "aof_enabled:1") {
			n.aof = "yes"
		}
	}
	t0 := time.Now()
	if st, err := c.Time(ctx).Result(); err == nil {
		local := t0.Add(time.Since(t0) / 2)
		n.skew, n.clock = st.Sub(local), true
		if n.skew < 0 {
			n.skew = -n.skew
		}
	}
	return n
}

// doctorRedis checks persistence and clocks. A Cluster's data, the ring
// included, is spread over its masters, so each master is checked: one
// that does not persist loses its share of the keys on a restart.
func doctorRedis(ctx context.Context, a *app, e *env, ringHere bool, add func(level, check, detail, action string)) {
	c := e.ringStore.Redis
	cctx, cancel := a.callCtx(ctx)
	defer cancel()
	var nodes []redisNode
	if cc, ok := c.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err := cc.ForEachMaster(cctx, func(ctx context.Context, m *redis.Client) error {
			n := readRedisNode(ctx, m, m.Options().Addr)
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
			return nil
		})
		if err != nil {
			add("fail", "cluster", fmt.Sprintf("the Cluster's masters cannot all be reached: %v", err), "check CLUSTER INFO on each node")
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].addr < nodes[j].addr })
	} else {
		nodes = append(nodes, readRedisNode(cctx, c, ""))
	}
	what := "the token cache"
	if ringHere {
		what = "the key ring"
	}
	type verdict struct{ level, detail, action string }
	judge := func(n redisNode) verdict {
		switch {
		case n.aof == "yes":
			return verdict{"ok", "Redis persists (appendonly yes)", ""}
		case n.save != "":
			return verdict{"warn", fmt.Sprintf("Redis persists by RDB snapshots only (save %q): a crash loses the writes since the last one", n.save),
				"set appendonly yes where the key ring lives"}
		case n.err != nil && n.aof == "":
			return verdict{"warn", fmt.Sprintf("Redis's persistence settings cannot be read (%v)", n.err),
				"check appendonly on the server: the key ring must survive a restart"}
		case ringHere:
			return verdict{"fail", "Redis does not persist (appendonly no, no save): a restart loses " + what + " and every token becomes unreadable",
				"CONFIG SET appendonly yes (and in redis.conf), or keep the ring in bbolt (-ring-store)"}
		default:
			return verdict{"info", "Redis does not persist: a restart empties the cache (a miss per user, nothing worse)", ""}
		}
	}
	// One finding when every master says the same, one per master
	// otherwise, so that the odd one out is named.
	same := true
	for _, n := range nodes[1:] {
		same = same && judge(n) == judge(nodes[0])
	}
	for i, n := range nodes {
		v := judge(n)
		switch {
		case len(nodes) == 1:
		case same && i > 0:
			continue
		case same:
			v.detail = fmt.Sprintf("every master (%d): %s", len(nodes), v.detail)
		default:
			v.detail = fmt.Sprintf("master %s: %s", n.addr, v.detail)
		}
		add(v.level, "persistence", v.detail, v.action)
	}
	var worst redisNode
	for _, n := range nodes {
		if n.clock && (!worst.clock || n.skew > worst.skew) {
			worst = n
		}
	}
	if !worst.clock {
		return
	}
	where := "the server's clock"
	if len(nodes) > 1 {
		where = fmt.Sprintf("the clocks of the %d masters are", len(nodes))
	}
	if worst.skew > 2*time.Second {
		if len(nodes) > 1 {
			where = fmt.Sprintf("master %s's clock", worst.addr)
		}
		add("warn", "clock", fmt.Sprintf("%s is %v away from this host's", where, worst.skew.Round(time.Millisecond)),
			"run NTP on both: key activation allows for 5 minutes of skew, token expiry for less")
	} else {
		verb := "is"
		if len(nodes) > 1 {
			verb = "all"
		}
		add("ok", "clock", fmt.Sprintf("%s %s within %v of this host's", where, verb, worst.skew.Round(time.Millisecond)), "")
	}
}

func doctorRing(ctx context.Context, e *env, add func(level, check, detail, action string)) {
	r, err := e.openRing(ctx)
	if errors.Is(err, errKEK) {
		add("fail", "kek", err.Error(), "use the servers' KEK. If it is theirs, the ring record is damaged: a running server rewrites it within its refresh interval; "+
			"if none runs and the KEK is lost for good, 'msalcache ring reset -yes' (every token is then acquired again once)")
		return
	}
	if err != nil {
		action := "check -kek-file/MSALCACHE_KEK and -kek-id (or -kek-cert and -kek-key); if the KEK is lost for good, see 'msalcache ring reset'"
		if errors.Is(err, ringadmin.ErrNoRing) {
			action = "start an app server with the KEK (it creates the ring), or check -store, -prefix and -ring-store"
		}
		add("fail", "ring", err.Error(), action)
		return
	}
	add("ok", "kek", "the KEK unwraps every key of the ring", "")
	doctorKEKs(ctx, e, r, add)
	keys, err := ringadmin.Keys(ctx, r)
	if err != nil {
		add("fail", "ring", err.Error(), "")
		return
	}
	now := time.Now()
	var def *ringadmin.KeyInfo
	var next *ringadmin.KeyInfo
	var revoked []string
	for i, k := range keys {
		if k.Default {
			def = &keys[i]
		}
		if k.Status == ringadmin.KeyPending && (next == nil || k.Activation.Before(next.Activation)) {
			next = &keys[i]
		}
		if k.Revoked {
			revoked = append(revoked, k.ID)
		}
	}
	if def == nil {
		add("fail", "ring", "no key may encrypt now (all expired or revoked)", "run an app server (it mints one) or 'msalcache keys rotate'")
	} else {
		add("ok", "ring", fmt.Sprintf("current key %s, expires %s (in %s)", def.ID, def.Expiration.UTC().Format(time.RFC3339), fmtLifetime(def.Expiration.Sub(now), true)), "")
		if next != nil {
			add("ok", "ring", fmt.Sprintf("next key %s activates %s", next.ID, next.Activation.UTC().Format(time.RFC3339)), "")
		} else if def.Expiration.Sub(now) < ringadmin.ActivationDelay {
			add("warn", "ring", "the current key expires within a day and no next key is written", "make sure an app server runs (it schedules the next key), or run 'msalcache keys rotate'")
		}
	}
	if len(revoked) > 0 {
		add("info", "ring", fmt.Sprintf("revoked keys: %s", strings.Join(revoked, ", ")), "'msalcache rewrap -delete' removes blobs still sealed under them")
	}
}

func reportFindings(a *app, out []finding, asJSON bool) error {
	// A KEK that fails is the operator's first thing to fix, and what
	// the findings after it may follow from: it comes first.
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Check == "kek" && out[i].Level == "fail" && !(out[j].Check == "kek" && out[j].Level == "fail")
	})
	failed := false
	for _, f := range out {
		failed = failed || f.Level == "fail"
	}
	if asJSON {
		if err := printJSON(a, map[string]any{"ok": !failed, "findings": out}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, f := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(f.Level), f.Check, f.Detail)
			if f.Action != "" {
				fmt.Fprintf(tw, "\t\t→ %s\n", f.Action)
			}
		}
		tw.Flush()
	}
	if failed {
		return errReported
	}
	return nil
}

type statsOut struct {
	Namespace  string         `json:"namespace"`
	Partitions int            `json:"partitions"`
	TotalBytes int64          `json:"total_bytes"`
	Largest    int            `json:"largest_bytes"`
	ByKind     map[string]int `json:"by_kind"`
	Lifetimes  map[string]int `json:"lifetimes"`
	ByDataKey  map[string]int `json:"blobs_by_data_key"`
	Vanished   int            `json:"vanished_while_listing"`
}

var lifetimeBuckets = []struct {
	name string
	max  time.Duration
}{{"<1h", time.Hour}, {"<1d", 24 * time.Hour}, {"<7d", 7 * 24 * time.Hour}, {"<30d", 30 * 24 * time.Hour}, {"<90d", 90 * 24 * time.Hour}, {">=90d", 1<<63 - 1}}

func runStats(ctx context.Context, a *app, args []string) error {
	fs := a.flags("stats", "[-json]", "Counts the namespace's partitions by kind (with a KEK), size, lifetime and data key. Prints nothing secret.")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := a.open(ctx, false)
	if err != nil {
		return err
	}
	defer e.close()
	keys, err := e.listKeys(ctx, e.store, a.partitionPrefix())
	if err != nil {
		return err
	}
	st := statsOut{Namespace: a.namespace, ByKind: map[string]int{}, Lifetimes: map[string]int{}, ByDataKey: map[string]int{}}
	canOpen := e.kek != nil
	if canOpen {
		if _, err := e.openRing(ctx); err != nil {
			return err
		}
	}
	p := a.progress("stats", len(keys))
	defer p.end()
	now := time.Now()
	for i, k := range keys {
		if ctx.Err() != nil {
			return interrupted("partitions", i, len(keys))
		}
		p.step(i)
		b, err := e.readBlob(ctx, e.store, k)
		if errors.Is(err, driver.ErrNotFound) {
			st.Vanished++
			continue
		}
		if err != nil {
			return fmt.Errorf("read a partition: %w", err)
		}
		st.Partitions++
		st.TotalBytes += int64(b.Size)
		st.Largest = max(st.Largest, b.Size)
		st.ByDataKey[b.DataKey]++
		switch {
		case !b.lifetimeKnow:
			st.Lifetimes["unknown"]++
		case b.lifetime == driver.NoExpiry:
			st.Lifetimes["none"]++
		default:
			for _, bk := range lifetimeBuckets {
				if b.lifetime < bk.max {
					st.Lifetimes[bk.name]++
					break
				}
			}
		}
		kind := "unknown (no KEK)"
		if canOpen || b.DataKey == "plaintext" {
			plain, err := e.open(ctx, b)
			switch {
			case errors.Is(err, protect.ErrKeyRevoked):
				kind = "unreadable (revoked key)"
			case err != nil:
				kind = "unreadable"
			default:
				if s, err := summarize(plain, now, false); err != nil {
					kind = "not an MSAL cache"
				} else {
					kind = s.Kind
				}
			}
		}
		st.ByKind[kind]++
	}
	p.step(len(keys))
	p.end()
	if *asJSON {
		return printJSON(a, st)
	}
	w := a.stdout
	fmt.Fprintf(w, "namespace %q: %d partitions, %d bytes in all, largest %d bytes\n", st.Namespace, st.Partitions, st.TotalBytes, st.Largest)
	printCounts(a, "kind", st.ByKind, nil)
	order := []string{}
	for _, b := range lifetimeBuckets {
		order = append(order, b.name)
	}
	printCounts(a, "lifetime left", st.Lifetimes, append(order, "none", "unknown"))
	printCounts(a, "data key", st.ByDataKey, nil)
	return nil
}

func printCounts(a *app, title string, m map[string]int, order []string) {
	if len(m) == 0 {
		return
	}
	if order == nil {
		for k := range m {
			order = append(order, k)
		}
		sort.Strings(order)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\n%s\tpartitions\n", strings.ToUpper(title))
	for _, k := range order {
		if n, ok := m[k]; ok {
			fmt.Fprintf(tw, "%s\t%d\n", k, n)
		}
	}
	tw.Flush()
}

type inspectOut struct {
	*Blob
	Version  string   `json:"version"`
	Readable bool     `json:"readable"`
	Error    string   `json:"error,omitempty"`
	Summary  *summary `json:"partition,omitempty"`
}

func runInspect(ctx context.Context, a *app, args []string) error {
	fs := a.flags("inspect", "-key STOREKEY | -partition KEY [-json] [-reveal-users]",
		"Shows one partition decrypted and redacted: accounts, token kinds, scopes, expiries, sizes; never a token.")
	key := fs.String("key", "", "the partition's store `key` (tc/<namespace>/...)")
	part := fs.String("partition", "", "the partition `key` the adapter hashes (a home account id uid.utid, or clientID_tenant_AppTokenCache)")
	asJSON := fs.Bool("json", false, "print JSON")
	reveal := fs.Bool("reveal-users", false, "show user names in full (masked by default)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*key == "") == (*part == "") {
		return usageError("give one of -key or -partition")
	}
	e, err := a.open(ctx, false)
	if err != nil {
		return err
	}
	defer e.close()
	k, err := e.storeKey(ctx, *key, *part)
	if err != nil {
		return err
	}
	b, err := e.readBlob(ctx, e.store, k)
	if errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("no partition under %s", k)
	}
	if err != nil {
		return err
	}
	out := inspectOut{Blob: b, Version: fmt.Sprintf("%016x", uint64(b.version))}
	plain, err := e.open(ctx, b)
	if err == nil {
		out.Summary, err = summarize(plain, time.Now(), *reveal)
	}
	if err != nil {
		out.Error = err.Error()
	} else {
		out.Readable = true
	}
	if *asJSON {
		return printJSON(a, out)
	}
	w := a.stdout
	fmt.Fprintf(w, "store key   %s\nsize        %d bytes\ndata key    %s\nversion     %s\nlifetime    %s\n", b.Key, b.Size, b.DataKey, out.Version, b.Lifetime)
	if !out.Readable {
		fmt.Fprintf(w, "unreadable  %s\n", out.Error)
		return nil
	}
	s := out.Summary
	fmt.Fprintf(w, "kind        %s\n", s.Kind)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(s.Accounts) > 0 {
		fmt.Fprintf(tw, "\nACCOUNT\tUSERNAME\tREALM\n")
		for _, ac := range s.Accounts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", ac.HomeAccountID, ac.Username, ac.Realm)
		}
	}
	if len(s.AccessTokens) > 0 {
		fmt.Fprintf(tw, "\nACCESS TOKEN\tCLIENT\tREALM\tSCOPES\tEXPIRES\n")
		for _, at := range s.AccessTokens {
			state := at.ExpiresOn.UTC().Format(time.RFC3339)
			if at.Expired {
				state += " (expired)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(at.HomeAccountID), at.ClientID, at.Realm, at.Scopes, state)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nrefresh tokens %d, id tokens %d, app metadata %d\n", len(s.RefreshTokens), s.IDTokens, s.AppMetadata)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "(app)"
	}
	return s
}

// storeKey resolves -key or -partition to a store key.
func (e *env) storeKey(ctx context.Context, key, part string) (string, error) {
	if key != "" {
		return key, nil
	}
	ad, err := e.keyer(ctx)
	if err != nil {
		return "", err
	}
	return ad.StoreKey(part), nil
}
