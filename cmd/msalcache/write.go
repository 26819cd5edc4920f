package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
	"github.com/redis/go-redis/v9"
)

type keyOut struct {
	ID         string     `json:"id"`
	Status     string     `json:"status"`
	Default    bool       `json:"default"`
	Created    *time.Time `json:"created,omitempty"`
	Activation *time.Time `json:"activation,omitempty"`
	Expiration *time.Time `json:"expiration,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	KEK        string     `json:"kek"`
	KEKKind    string     `json:"kek_kind"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func runKeys(ctx context.Context, a *app, args []string) error {
	fs := a.flags("keys", "list [-json] | rotate | revoke [-yes] ID", "Lists, rotates or revokes the key ring's data keys.")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	yes := fs.Bool("yes", false, "revoke without asking")
	if err := parse(fs, args); err != nil {
		return err
	}
	sub := fs.Arg(0)
	rest := fs.Args()
	if len(rest) > 0 {
		rest = rest[1:]
	}
	// Flags may follow the subcommand too.
	if err := parse(fs, rest); err != nil {
		return err
	}
	switch sub {
	case "list", "rotate":
		if fs.NArg() != 0 {
			return usageError("keys %s takes no argument", sub)
		}
	case "revoke":
		if fs.NArg() != 1 {
			return usageError("keys revoke takes one key ID (see keys list)")
		}
	default:
		return usageError("keys needs list, rotate or revoke")
	}
	e, err := a.open(ctx, sub != "list")
	if err != nil {
		return err
	}
	defer e.close()
	switch sub {
	case "list":
		r, err := e.openRing(ctx)
		if err != nil {
			return err
		}
		return listKeys(ctx, a, r, *asJSON)
	case "rotate":
		r, err := e.writableRing(ctx)
		if err != nil {
			return err
		}
		defer r.Close()
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		if err := r.Rotate(cctx); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "rotated: the new key is the default now; servers use it within their refresh interval (10 min by default). Run 'msalcache rewrap' to re-encrypt existing blobs now.")
		return listKeys(ctx, a, r, false)
	default:
		id := fs.Arg(0)
		if !*yes {
			fmt.Fprintf(a.stderr, "Revoke key %s? Blobs sealed under it become unreadable (a cache miss each: the token is fetched again). Type yes: ", id)
			line, _ := bufio.NewReader(a.stdin).ReadString('\n')
			if strings.TrimSpace(line) != "yes" {
				return errors.New("not revoked (answer was not yes; pass -yes to skip the question)")
			}
		}
		r, err := e.writableRing(ctx)
		if err != nil {
			return err
		}
		defer r.Close()
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		if err := r.Revoke(cctx, id); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "revoked %s. Run 'msalcache rewrap -delete' to remove the blobs still sealed under it.\n", id)
		return nil
	}
}

func listKeys(ctx context.Context, a *app, r *protect.KeyRing, asJSON bool) error {
	cctx, cancel := a.callCtx(ctx)
	defer cancel()
	keys, err := ringadmin.Keys(cctx, r)
	if err != nil {
		return err
	}
	out := make([]keyOut, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyOut{ID: k.ID, Status: k.Status.String(), Default: k.Default, Created: tp(k.Created),
			Activation: tp(k.Activation), Expiration: tp(k.Expiration), RevokedAt: tp(k.RevokedAt), KEK: k.KEKID, KEKKind: k.KEKKind})
	}
	if asJSON {
		return printJSON(a, out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tSTATUS\tDEFAULT\tACTIVATION\tEXPIRATION\tREVOKED\tKEK KIND\tKEK\n")
	f := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	for _, k := range out {
		d := ""
		if k.Default {
			d = "*"
		}
		kind := k.KEKKind
		if kind == "" {
			kind = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Status, d, f(k.Activation), f(k.Expiration), f(k.RevokedAt), kind, k.KEK)
	}
	return tw.Flush()
}

// saveTTL turns a Lifetime into Save's ttl.
func saveTTL(d time.Duration, known bool) time.Duration {
	if !known {
		return 0
	}
	return d // NoExpiry is negative: no expiry again
}

type rewrapOut struct {
	Current   string `json:"current_key"`
	Total     int    `json:"partitions"`
	Current0  int    `json:"already_current"`
	Rewrapped int    `json:"rewrapped"`
	Changed   int    `json:"changed_meanwhile"`
	Revoked   int    `json:"under_revoked_key"`
	Deleted   int    `json:"deleted"`
	Unread    int    `json:"unreadable"`
	Plain     int    `json:"plaintext"`
	Gone      int    `json:"vanished"`
	DryRun    bool   `json:"dry_run"`
}

func runRewrap(ctx context.Context, a *app, args []string) error {
	fs := a.flags("rewrap", "[-dry-run] [-delete] [-json]",
		"Re-encrypts every partition not sealed under the ring's current key, with compare-and-set (a concurrent write wins), keeping each one's lifetime. Idempotent and resumable.")
	dry := fs.Bool("dry-run", false, "count, change nothing")
	del := fs.Bool("delete", false, "delete partitions sealed under a revoked key")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := a.open(ctx, !*dry)
	if err != nil {
		return err
	}
	defer e.close()
	r, err := e.openRing(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := a.callCtx(ctx)
	keys, err := ringadmin.Keys(cctx, r)
	cancel()
	if err != nil {
		return err
	}
	out := rewrapOut{DryRun: *dry}
	revoked := map[string]bool{}
	for _, k := range keys {
		if k.Default {
			out.Current = k.ID
		}
		revoked[k.ID] = k.Revoked
	}
	if out.Current == "" {
		return errors.New("no key may encrypt now: run 'msalcache keys rotate' first")
	}
	list, err := e.listKeys(ctx, e.store, a.partitionPrefix())
	if err != nil {
		return err
	}
	out.Total = len(list)
	p := a.progress("rewrap", len(list))
	defer p.end()
	for i, k := range list {
		if ctx.Err() != nil {
			p.end()
			printRewrap(a, out, *asJSON)
			return interrupted("partitions", i, len(list))
		}
		p.step(i)
		b, err := e.readBlob(ctx, e.store, k)
		if errors.Is(err, driver.ErrNotFound) {
			out.Gone++
			continue
		}
		if err != nil {
			return err
		}
		switch {
		case b.DataKey == out.Current:
			out.Current0++
			continue
		case b.DataKey == "plaintext":
			out.Plain++
			continue
		case revoked[b.DataKey]:
			out.Revoked++
			if *del && !*dry {
				if ok, err := e.deleteIfUnchanged(ctx, e.store, b); err != nil {
					return err
				} else if ok {
					out.Deleted++
				} else {
					out.Changed++
				}
			}
			continue
		}
		plain, err := e.open(ctx, b)
		if err != nil {
			out.Unread++
			continue
		}
		if *dry {
			out.Rewrapped++
			continue
		}
		cctx, cancel := a.callCtx(ctx)
		sealed, err := r.Protect(cctx, plain, []byte(b.Key))
		if err == nil {
			_, err = e.store.Save(cctx, b.Key, sealed, b.version, saveTTL(b.lifetime, b.lifetimeKnow))
		}
		cancel()
		switch {
		case errors.Is(err, driver.ErrConflict):
			out.Changed++ // a server wrote it meanwhile, under the current key
		case err != nil:
			return fmt.Errorf("rewrite a partition: %w", err)
		default:
			out.Rewrapped++
		}
	}
	p.step(len(list))
	p.end()
	return printRewrap(a, out, *asJSON)
}

func printRewrap(a *app, out rewrapOut, asJSON bool) error {
	if asJSON {
		return printJSON(a, out)
	}
	verb := "rewrapped"
	if out.DryRun {
		verb = "would rewrap"
	}
	fmt.Fprintf(a.stdout, "current key %s: %d partitions, %d already under it, %s %d, %d changed meanwhile (left to their writer), %d under a revoked key (%d deleted), %d unreadable, %d plaintext, %d vanished\n",
		out.Current, out.Total, out.Current0, verb, out.Rewrapped, out.Changed, out.Revoked, out.Deleted, out.Unread, out.Plain, out.Gone)
	if out.Revoked > out.Deleted && !out.DryRun {
		fmt.Fprintln(a.stdout, "blobs under a revoked key are misses for the servers; 'msalcache rewrap -delete' removes them")
	}
	return nil
}

// deleteIfUnchanged deletes b's key if it still holds b's version. The
// contract has no compare-and-delete: a write landing between the check
// and the Delete is lost, which for a token cache costs one token request.
func (e *env) deleteIfUnchanged(ctx context.Context, s *storeurl.Store, b *Blob) (bool, error) {
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	_, v, err := s.Load(cctx, b.Key)
	if errors.Is(err, driver.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if v != b.version {
		return false, nil
	}
	return true, s.Delete(cctx, b.Key)
}

type migrateOut struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Source     int    `json:"source_partitions"`
	Copied     int    `json:"copied"`
	KeptNewer  int    `json:"kept_at_destination"`
	Expired    int    `json:"expired_or_vanished"`
	Verified   int    `json:"verified_at_destination"`
	Missing    int    `json:"missing_at_destination"`
	RingCopied string `json:"ring,omitempty"`
	DryRun     bool   `json:"dry_run"`
}

// migrateDryOut is migrate -dry-run -json: what a run would do, in words
// that cannot be read as done.
type migrateDryOut struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Source    int    `json:"source_partitions"`
	WouldCopy int    `json:"would_copy"`
	WouldKeep int    `json:"would_keep_at_destination"`
	Expired   int    `json:"expired_or_vanished"`
	Ring      string `json:"ring,omitempty"`
	DryRun    bool   `json:"dry_run"`
}

// persists refuses a Redis destination for the key ring when a server of
// it (each master of a Cluster) keeps nothing across a restart: the ring
// would be lost with it, and every token with the ring.
func persists(ctx context.Context, a *app, dst *storeurl.Store) error {
	cctx, cancel := a.callCtx(ctx)
	defer cancel()
	var nodes []redisNode
	if cc, ok := dst.Redis.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err := cc.ForEachMaster(cctx, func(ctx context.Context, m *redis.Client) error {
			n := readRedisNode(ctx, m, m.Options().Addr)
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return fmt.Errorf("destination %s: its masters cannot all be reached to check that they persist: %w", dst.URL, err)
		}
	} else {
		nodes = append(nodes, readRedisNode(cctx, dst.Redis, ""))
	}
	for _, n := range nodes {
		if n.aof == "yes" || n.save != "" {
			continue
		}
		where := dst.URL.String()
		if n.addr != "" {
			where = "master " + n.addr + " of " + where
		}
		if n.err != nil {
			return fmt.Errorf("destination %s: cannot tell whether it persists (%v), and the key ring must survive a restart; check appendonly there, then pass -force", where, n.err)
		}
		return fmt.Errorf("destination %s does not persist (appendonly no, no save): a restart there loses the key ring, and every token with it. "+
			"Turn persistence on (CONFIG SET appendonly yes, and in redis.conf), keep the ring where it is (migrate without -ring, -ring-store), or pass -force", where)
	}
	return nil
}

func runMigrate(ctx context.Context, a *app, args []string) error {
	fs := a.flags("migrate", "-to URL [-to-prefix P] [-ring [-force]] [-all-namespaces] [-dry-run] [-json]",
		"Copies every partition of the namespace to another store with its remaining lifetime, create-only (what the destination already holds wins), then checks that each one is there. Blobs stay encrypted: no KEK is needed.")
	to := fs.String("to", "", "destination store `URL`")
	toPrefix := fs.String("to-prefix", "", "destination key `prefix` (default: -prefix, or the store's own)")
	ring := fs.Bool("ring", false, "copy the key ring (and its marker) too")
	all := fs.Bool("all-namespaces", false, "copy every namespace (tc/...), not only -namespace")
	dry := fs.Bool("dry-run", false, "count, write nothing")
	force := fs.Bool("force", false, "with -ring: copy the ring even into a Redis that does not persist (a restart there loses it)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return usageError("migrate needs -to URL")
	}
	toPrefixSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "to-prefix" {
			toPrefixSet = true
		}
	})
	e, err := a.open(ctx, false)
	if err != nil {
		return err
	}
	defer e.close()
	dopts := []storeurl.Option{}
	switch {
	case toPrefixSet:
		dopts = append(dopts, storeurl.WithPrefix(*toPrefix))
	case a.prefixSet:
		dopts = append(dopts, storeurl.WithPrefix(a.prefix))
	}
	du, err := storeurl.Parse(*to)
	if err != nil {
		return err
	}
	if du.String() == e.store.URL.String() && !toPrefixSet {
		return usageError("-to names the source store")
	}
	var dst *storeurl.Store
	switch {
	case *dry && du.Kind == storeurl.Bolt:
		// A dry run creates no file: an existing one is read, a
		// missing one is empty.
		if _, serr := os.Stat(du.Path); errors.Is(serr, os.ErrNotExist) {
			dst = &storeurl.Store{Store: memstore.New(), URL: du}
		} else {
			dst, err = openBoltReadOnly(du, toPrefixSet && *toPrefix != "" || !toPrefixSet && a.prefixSet && a.prefix != "")
		}
	default:
		dst, err = du.Open(ctx, dopts...)
	}
	if err != nil {
		return err
	}
	defer dst.Close()
	if p, ok := dst.Store.(driver.Pinger); ok {
		cctx, cancel := a.callCtx(ctx)
		err := p.Ping(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("destination %s does not answer: %w", du, err)
		}
	}
	if *ring && driver.IsVolatile(dst.Store) {
		return fmt.Errorf("%w: %s cannot hold the key ring; migrate without -ring and keep the ring where it is (-ring-store)", protect.ErrVolatileStore, du)
	}
	if *ring && dst.Redis != nil && !*force {
		if err := persists(ctx, a, dst); err != nil {
			return err
		}
	}
	prefix := a.partitionPrefix()
	if *all {
		prefix = "tc/"
	}
	keys, err := e.listKeys(ctx, e.store, prefix)
	if err != nil {
		return err
	}
	out := migrateOut{From: e.store.URL.String(), To: du.String(), Source: len(keys), DryRun: *dry}
	copyKey := func(src *storeurl.Store, k string) (copied, kept bool, err error) {
		b, err := e.readBlob(ctx, src, k)
		if errors.Is(err, driver.ErrNotFound) {
			return false, false, nil
		}
		if err != nil {
			return false, false, err
		}
		if *dry {
			// What the real run would do: keep what the destination holds.
			_, _, err := e.load(ctx, dst, k)
			if err == nil {
				return false, true, nil
			}
			if !errors.Is(err, driver.ErrNotFound) {
				return false, false, err
			}
			return true, false, nil
		}
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		_, err = dst.Save(cctx, k, b.raw, driver.NoVersion, saveTTL(b.lifetime, b.lifetimeKnow))
		if errors.Is(err, driver.ErrConflict) {
			return false, true, nil
		}
		return err == nil, false, err
	}
	if *ring {
		for _, k := range []string{ringadmin.RingKey, ringadmin.MarkerKey(ringadmin.RingKey)} {
			copied, kept, err := copyKey(e.ringStore, k)
			if err != nil {
				return fmt.Errorf("copy the key ring: %w", err)
			}
			if k == ringadmin.RingKey {
				switch {
				case copied && *dry:
					out.RingCopied = "would copy"
				case copied:
					out.RingCopied = "copied"
				case kept && *dry:
					out.RingCopied = "would keep the destination's (it already holds a ring)"
				case kept:
					out.RingCopied = "kept (the destination already holds a ring)"
				default:
					out.RingCopied = "absent at the source"
				}
			}
		}
	}
	p := a.progress("migrate", len(keys))
	var done []string
	for i, k := range keys {
		if ctx.Err() != nil {
			p.end()
			return interrupted("partitions", i, len(keys))
		}
		p.step(i)
		copied, kept, err := copyKey(e.store, k)
		if err != nil {
			p.end()
			return fmt.Errorf("copy a partition: %w", err)
		}
		switch {
		case copied:
			out.Copied++
			done = append(done, k)
		case kept:
			out.KeptNewer++
			done = append(done, k)
		default:
			out.Expired++
		}
	}
	p.step(len(keys))
	p.end()
	if !*dry {
		for _, k := range done {
			if _, _, err := e.load(ctx, dst, k); err != nil {
				out.Missing++
			} else {
				out.Verified++
			}
		}
	}
	switch {
	case *asJSON && *dry:
		if err := printJSON(a, migrateDryOut{From: out.From, To: out.To, Source: out.Source, WouldCopy: out.Copied,
			WouldKeep: out.KeptNewer, Expired: out.Expired, Ring: out.RingCopied, DryRun: true}); err != nil {
			return err
		}
	case *asJSON:
		if err := printJSON(a, out); err != nil {
			return err
		}
	case *dry:
		fmt.Fprintf(a.stdout, "%s -> %s: %d partitions; would copy %d, would keep %d the destination holds, %d expired meanwhile; nothing written (dry run)\n",
			out.From, out.To, out.Source, out.Copied, out.KeptNewer, out.Expired)
	default:
		fmt.Fprintf(a.stdout, "%s -> %s: %d partitions, copied %d, %d kept at the destination (newer), %d expired meanwhile; verified %d, missing %d\n",
			out.From, out.To, out.Source, out.Copied, out.KeptNewer, out.Expired, out.Verified, out.Missing)
	}
	if !*asJSON && out.RingCopied != "" {
		fmt.Fprintf(a.stdout, "key ring: %s\n", out.RingCopied)
	}
	if out.Missing > 0 {
		return fmt.Errorf("%d copied partitions are missing at the destination (evicted, or the destination is too small?)", out.Missing)
	}
	return nil
}

func runRm(ctx context.Context, a *app, args []string) error {
	fs := a.flags("rm", "-key STOREKEY | -partition KEY | -expired [-dry-run] [-yes]",
		"Removes one partition, or with -expired every partition that can serve no token any more (no refresh token, every access token expired).")
	key := fs.String("key", "", "the partition's store `key`")
	part := fs.String("partition", "", "the partition `key` the adapter hashes (a home account id, ...)")
	expired := fs.Bool("expired", false, "remove partitions that can serve no token (needs the KEK)")
	dry := fs.Bool("dry-run", false, "list, remove nothing")
	yes := fs.Bool("yes", false, "remove even a key ring record (-key "+ringadmin.RingKey+"): every stored token becomes unreadable")
	if err := parse(fs, args); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{*key != "", *part != "", *expired} {
		if set {
			n++
		}
	}
	if n != 1 {
		return usageError("give exactly one of -key, -partition or -expired")
	}
	// What it will refuse, it opens read-only: a refusal leaves the file as it was.
	e, err := a.open(ctx, !*dry && (*yes || !isRingKey(*key)))
	if err != nil {
		return err
	}
	defer e.close()
	if !*expired {
		k, err := e.storeKey(ctx, *key, *part)
		if err != nil {
			return err
		}
		_, _, err = e.load(ctx, e.store, k)
		if errors.Is(err, driver.ErrNotFound) {
			fmt.Fprintf(a.stdout, "no partition under %s: nothing to remove\n", k)
			return nil
		}
		if err != nil && !errors.Is(err, driver.ErrCorrupt) {
			return err
		}
		ringRecord := isRingKey(k)
		if *dry {
			if ringRecord && !*yes {
				fmt.Fprintf(a.stdout, "would refuse to remove %s without -yes: it is a key ring record\n", k)
				return nil
			}
			fmt.Fprintf(a.stdout, "would remove %s\n", k)
			return nil
		}
		if ringRecord && !*yes {
			return fmt.Errorf("nothing removed: %s is a key ring record, and without it every stored token becomes unreadable. "+
				"For a KEK lost for good, run 'msalcache ring reset -yes'; to remove this record anyway, run again with -yes", k)
		}
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		if err := e.store.Delete(cctx, k); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "removed %s\n", k)
		return nil
	}
	if _, err := e.openRing(ctx); err != nil && e.kek != nil {
		return err
	}
	keys, err := e.listKeys(ctx, e.store, a.partitionPrefix())
	if err != nil {
		return err
	}
	removed, kept, unread := 0, 0, 0
	now := time.Now()
	p := a.progress("rm -expired", len(keys))
	defer p.end()
	for i, k := range keys {
		if ctx.Err() != nil {
			return interrupted("partitions", i, len(keys))
		}
		p.step(i)
		b, err := e.readBlob(ctx, e.store, k)
		if errors.Is(err, driver.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		plain, err := e.open(ctx, b)
		if err != nil {
			unread++
			continue
		}
		s, err := summarize(plain, now, false)
		if err != nil || s.usable() {
			kept++
			continue
		}
		if !*dry {
			if ok, err := e.deleteIfUnchanged(ctx, e.store, b); err != nil {
				return err
			} else if !ok {
				kept++
				continue
			}
		}
		removed++
	}
	p.step(len(keys))
	p.end()
	verb := "removed"
	if *dry {
		verb = "would remove"
	}
	fmt.Fprintf(a.stdout, "%s %d partitions that serve no token; kept %d; %d unreadable (see rewrap -delete)\n", verb, removed, kept, unread)
	return nil
}

// isRingKey reports whether k is a key ring's record or its marker:
// anything under the directory of ringadmin.RingKey
// (msalcache/keyring/...), where rings live unless told otherwise.
func isRingKey(k string) bool {
	dir := path.Dir(ringadmin.RingKey) + "/"
	return strings.HasPrefix(k, dir) || strings.HasPrefix(k, ringadmin.RingKey)
}

func runRing(ctx context.Context, a *app, args []string) error {
	fs := a.flags("ring", "reset -yes", "Deletes the key ring and its marker, for a KEK lost for good: servers then mint a new ring, and every stored token becomes unreadable (a cache miss each, then fetched again from Entra ID).")
	yes := fs.Bool("yes", false, "really delete the ring")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.Arg(0) != "reset" {
		return usageError("ring needs reset")
	}
	if err := parse(fs, fs.Args()[1:]); err != nil {
		return err
	}
	e, err := a.open(ctx, *yes) // without -yes it only explains
	if err != nil {
		return err
	}
	defer e.close()
	if driver.IsVolatile(e.ringStore.Store) {
		return fmt.Errorf("%w: %s holds no ring to reset; name the ring's store with -ring-store", protect.ErrVolatileStore, e.ringStore.URL)
	}
	warning := fmt.Sprintf("This deletes the key ring %q and its marker in %s. Every token stored under it becomes unreadable: each is a cache miss, fetched again from Entra ID, then shared again. Servers still running keep their copy and write it back: stop them first, or restart them all after the reset.", ringadmin.RingKey, e.ringStore.URL)
	if !*yes {
		fmt.Fprintln(a.stdout, warning)
		return errors.New("nothing deleted: run again with -yes")
	}
	fmt.Fprintln(a.stdout, warning)
	cctx, cancel := a.callCtx(ctx)
	defer cancel()
	for _, k := range []string{ringadmin.RingKey, ringadmin.MarkerKey(ringadmin.RingKey)} {
		if err := e.ringStore.Delete(cctx, k); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	fmt.Fprintln(a.stdout, "key ring deleted; the next server to start mints a new one")
	return nil
}
