package boltstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/entratest"
	"github.com/msalcache/msalcache/internal/testring"
)

// damagedEnv makes the test binary, re-executed by TestDamagedFiles, open
// the damaged file it names and use it as an application would, then exit
// 0; a panic or a fatal fault from bbolt exits otherwise.
const damagedEnv = "BOLTSTORE_TEST_DAMAGED"

// damagedBaseEnv names the token file TestDamagedFiles damages: made
// there if it does not exist, reused if it does, so that two builds
// (before and after a fix) can be compared on the same bytes.
const damagedBaseEnv = "BOLTSTORE_TEST_DAMAGED_BASE"

// makeTokenFile fills path with real token caches: MSAL-Go clients sign
// users in through an encrypting Adapter over a boltstore (one partition
// per user, app tokens for several tenants), then refresh them all, so that
// the file has branch, leaf, overflow and free pages as one in use does.
func makeTokenFile(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	store, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ring := testring.New(t, store)
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		t.Fatal(err)
	}
	srv := entratest.NewServer()
	defer srv.Close()
	cred, err := confidential.NewCredFromSecret("secret")
	if err != nil {
		t.Fatal(err)
	}
	web, err := confidential.New(srv.Authority("contoso"), "web-app", cred,
		confidential.WithCache(adapter), confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
	if err != nil {
		t.Fatal(err)
	}
	const users = 48
	var accounts []confidential.Account
	for i := range users {
		name := fmt.Sprintf("user%02d@contoso.example", i)
		srv.AddUser("contoso", name, "pw")
		ar, err := web.AcquireTokenByAuthCode(ctx, srv.AuthCode("contoso", name), "https://app.example/cb",
			[]string{"api://backend/read"})
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, ar.Account)
	}
	for i := range 8 {
		tenant := fmt.Sprintf("tenant%d", i)
		daemon, err := confidential.New(srv.Authority(tenant), "daemon", cred,
			confidential.WithCache(adapter), confidential.WithHTTPClient(srv.Client()), confidential.WithInstanceDiscovery(false))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := daemon.AcquireTokenByCredential(ctx, []string{"api://backend/.default"}); err != nil {
			t.Fatal(err)
		}
	}
	// A second scope for every user rewrites each partition, freeing pages.
	for _, a := range accounts {
		if _, err := web.AcquireTokenSilent(ctx, []string{"api://backend/write"}, confidential.WithSilentAccount(a)); err != nil {
			t.Fatal(err)
		}
	}
}

// page layout of bbolt (go.etcd.io/bbolt/internal/common), enough to aim
// the damage at the page kinds that matter.
const (
	branchFlag   = 0x01
	leafFlag     = 0x02
	bucketFlag   = 0x01 // leaf element flag: the value is a bucket header
	pageHeader   = 16
	elemSize     = 16
	metaOffset   = pageHeader
	offPageSize  = metaOffset + 8
	offRoot      = metaOffset + 16
	offFreelist  = metaOffset + 32
	offPgid      = metaOffset + 40
	offTxid      = metaOffset + 48
	offChecksum  = metaOffset + 56
	defaultPSize = 4096
)

// layout is where a token file's pages are, as its current meta says.
type layout struct {
	psize            int
	meta, other      int // offsets of the current and the other meta page
	hwm              uint64
	root, freelist   uint64 // root bucket's page, freelist page
	bucketElem       int    // offset of the store bucket's element in the root page
	bucketRoot       uint64 // the store bucket's root (a branch page)
	leaves           []uint64
	freeIDs, freeCnt int // offset of the freelist's ids, their count
}

func u64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
func u32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func u16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }

func readLayout(t *testing.T, f []byte) layout {
	t.Helper()
	l := layout{psize: int(u32(f, offPageSize))}
	if u64(f, l.psize+offTxid) > u64(f, offTxid) {
		l.meta, l.other = l.psize, 0
	} else {
		l.meta, l.other = 0, l.psize
	}
	l.hwm, l.root, l.freelist = u64(f, l.meta+offPgid), u64(f, l.meta+offRoot), u64(f, l.meta+offFreelist)
	rp := int(l.root) * l.psize
	for i := range int(u16(f, rp+10)) {
		e := rp + pageHeader + i*elemSize
		k := e + int(u32(f, e+4))
		if string(f[k:k+int(u32(f, e+8))]) == boltstore.DefaultBucket {
			l.bucketElem = e
			l.bucketRoot = u64(f, k+int(u32(f, e+8)))
		}
	}
	bp := int(l.bucketRoot) * l.psize
	if l.bucketRoot == 0 || u16(f, bp+8) != branchFlag {
		t.Fatalf("the token file's bucket root is not a branch page (root %d): make more users", l.bucketRoot)
	}
	for i := range int(u16(f, bp+10)) {
		l.leaves = append(l.leaves, u64(f, bp+pageHeader+i*elemSize+8))
	}
	fp := int(l.freelist) * l.psize
	l.freeIDs, l.freeCnt = fp+pageHeader, int(u16(f, fp+10))
	if l.freeCnt == 0xFFFF {
		l.freeIDs, l.freeCnt = fp+pageHeader+8, int(u64(f, fp+pageHeader))
	}
	if l.freeCnt < 3 {
		t.Fatalf("the token file has %d free pages: make it churn more", l.freeCnt)
	}
	return l
}

// fixMeta recomputes the checksum of the meta page at off, so that a
// damaged field passes bbolt's own check, as a bit flip that happens to
// keep a valid checksum (or a bug writing a bad but well-formed meta) would.
func fixMeta(f []byte, off int) {
	h := fnv.New64a()
	h.Write(f[off+metaOffset : off+offChecksum])
	binary.LittleEndian.PutUint64(f[off+offChecksum:], h.Sum64())
}

type variant struct {
	name   string
	damage func(f []byte, l layout) []byte
}

func put64(off int, v uint64) func([]byte, layout) []byte {
	return func(f []byte, _ layout) []byte { binary.LittleEndian.PutUint64(f[off:], v); return f }
}

func truncate(n func(f []byte, l layout) int) func([]byte, layout) []byte {
	return func(f []byte, l layout) []byte { return f[:min(n(f, l), len(f))] }
}

// metaField sets a field of the current meta (both, if both) to v(l) and
// fixes the checksums.
func metaField(field int, both bool, v func(l layout) uint64) func([]byte, layout) []byte {
	return func(f []byte, l layout) []byte {
		offs := []int{l.meta}
		if both {
			offs = append(offs, l.other)
		}
		for _, off := range offs {
			binary.LittleEndian.PutUint64(f[off+field:], v(l))
			if field == offPageSize-0 { // pageSize is a uint32 followed by flags
				binary.LittleEndian.PutUint32(f[off+field+4:], 0)
			}
			fixMeta(f, off)
		}
		return f
	}
}

func at(pg func(l layout) uint64, off int, width int, v uint64) func([]byte, layout) []byte {
	return func(f []byte, l layout) []byte {
		o := int(pg(l))*l.psize + off
		switch width {
		case 2:
			binary.LittleEndian.PutUint16(f[o:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(f[o:], uint32(v))
		default:
			binary.LittleEndian.PutUint64(f[o:], v)
		}
		return f
	}
}

func branchPg(l layout) uint64 { return l.bucketRoot }
func freePg(l layout) uint64   { return l.freelist }
func leafPg(i int) func(l layout) uint64 {
	return func(l layout) uint64 { return l.leaves[min(i, len(l.leaves)-1)] }
}

// freeID sets the i-th id of the freelist to v(l).
func freeID(i int, v func(l layout) uint64) func([]byte, layout) []byte {
	return func(f []byte, l layout) []byte {
		binary.LittleEndian.PutUint64(f[l.freeIDs+8*i:], v(l))
		return f
	}
}

// damagedVariants are 50 deterministic ways to damage a token file:
// truncations and bytes changed in the meta, freelist, branch and leaf
// pages, aimed by the file's own layout.
var damagedVariants = []variant{
	{"truncate-0", truncate(func([]byte, layout) int { return 0 })},
	{"truncate-15", truncate(func([]byte, layout) int { return 15 })},
	{"truncate-meta0", truncate(func(_ []byte, l layout) int { return l.psize - 1 })},
	{"truncate-1-page", truncate(func(_ []byte, l layout) int { return l.psize })},
	{"truncate-2-pages", truncate(func(_ []byte, l layout) int { return 2 * l.psize })},
	{"truncate-2-pages+17", truncate(func(_ []byte, l layout) int { return 2*l.psize + 17 })},
	{"truncate-half", truncate(func(f []byte, _ layout) int { return len(f) / 2 })},
	{"truncate-last-page", truncate(func(f []byte, l layout) int { return len(f) - l.psize })},
	{"truncate-last-byte", truncate(func(f []byte, _ layout) int { return len(f) - 1 })},
	{"truncate-in-branch", truncate(func(_ []byte, l layout) int { return int(l.bucketRoot)*l.psize + 100 })},

	{"meta-magic-current", func(f []byte, l layout) []byte { f[l.meta+metaOffset] ^= 0xFF; return f }},
	{"meta-magic-both", func(f []byte, l layout) []byte {
		f[l.meta+metaOffset] ^= 0xFF
		f[l.other+metaOffset] ^= 0xFF
		return f
	}},
	{"meta-root-is-freelist", metaField(offRoot, false, func(l layout) uint64 { return l.freelist })},
	{"meta-root-above-hwm", metaField(offRoot, false, func(l layout) uint64 { return l.hwm + 5 })},
	{"meta-freelist-is-branch", metaField(offFreelist, false, func(l layout) uint64 { return l.bucketRoot })},
	{"meta-freelist-above-hwm", metaField(offFreelist, false, func(l layout) uint64 { return l.hwm + 100 })},
	{"meta-hwm-2", metaField(offPgid, false, func(layout) uint64 { return 2 })},
	{"meta-hwm-x4", metaField(offPgid, false, func(l layout) uint64 { return l.hwm * 4 })},
	{"meta-pagesize-512", metaField(offPageSize, false, func(layout) uint64 { return 512 })},
	{"meta-pagesize-64k-both", metaField(offPageSize, true, func(layout) uint64 { return 65536 })},
	{"meta-root-is-leaf", metaField(offRoot, true, func(l layout) uint64 { return l.leaves[0] })},
	{"meta-checksum-current", func(f []byte, l layout) []byte { f[l.meta+offChecksum] ^= 1; return f }},

	{"freelist-count-ffff", at(freePg, 10, 2, 0xFFFF)},
	{"freelist-count-5000", at(freePg, 10, 2, 5000)},
	{"freelist-overflow-1000", at(freePg, 12, 4, 1000)},
	{"freelist-flags-leaf", at(freePg, 8, 2, leafFlag)},
	{"freelist-frees-branch", freeID(0, func(l layout) uint64 { return l.bucketRoot })},
	{"freelist-frees-leaf", freeID(1, func(l layout) uint64 { return l.leaves[0] })},
	{"freelist-frees-root", freeID(2, func(l layout) uint64 { return l.root })},
	{"freelist-id-above-hwm", freeID(0, func(l layout) uint64 { return l.hwm + 50 })},

	{"branch-count-0", at(branchPg, 10, 2, 0)},
	{"branch-count-ffff", at(branchPg, 10, 2, 0xFFFF)},
	{"branch-flags-meta", at(branchPg, 8, 2, 0x04)},
	{"branch-flags-freelist", at(branchPg, 8, 2, 0x10)},
	{"branch-child-is-self", func(f []byte, l layout) []byte {
		return put64(int(l.bucketRoot)*l.psize+pageHeader+8, l.bucketRoot)(f, l)
	}},
	{"branch-child-above-hwm", at(branchPg, pageHeader+elemSize+8, 8, 1<<40)},
	{"branch-child-is-freelist", func(f []byte, l layout) []byte {
		return put64(int(l.bucketRoot)*l.psize+pageHeader+8, l.freelist)(f, l)
	}},
	{"branch-key-pos-huge", at(branchPg, pageHeader, 4, 0xFFFFFF00)},
	{"branch-key-size-huge", at(branchPg, pageHeader+4, 4, 0x0FFFFFFF)},
	{"branch-child-is-meta", at(branchPg, pageHeader+elemSize+8, 8, 0)},

	{"leaf-count-ffff", at(leafPg(0), 10, 2, 0xFFFF)},
	{"leaf-flags-branch", at(leafPg(1), 8, 2, branchFlag)},
	{"leaf-value-pos-huge", at(leafPg(0), pageHeader+4, 4, 0x7FFFFFFF)},
	{"leaf-key-size-0", at(leafPg(2), pageHeader+8, 4, 0)},
	{"leaf-value-size-huge", at(leafPg(3), pageHeader+12, 4, 0x0FFFFFFF)},
	{"leaf-record-is-bucket", at(leafPg(0), pageHeader, 4, bucketFlag)},
	{"leaf-last-record-is-bucket", at(leafPg(99), pageHeader, 4, bucketFlag)},
	{"root-bucket-flag-cleared", func(f []byte, l layout) []byte { f[l.bucketElem] = 0; return f }},
	{"root-bucket-root-above-hwm", func(f []byte, l layout) []byte {
		k := l.bucketElem + int(u32(f, l.bucketElem+4))
		return put64(k+len(boltstore.DefaultBucket), l.hwm+3)(f, l)
	}},
	{"root-bucket-root-is-leaf", func(f []byte, l layout) []byte {
		k := l.bucketElem + int(u32(f, l.bucketElem+4))
		return put64(k+len(boltstore.DefaultBucket), l.leaves[len(l.leaves)/2])(f, l)
	}},
}

// TestDamagedFiles damages a real token file 50 ways and has a child
// process open and use each copy (load every key, write, delete, sweep):
// none may crash. A crash is a panic or a fatal fault from bbolt that the
// application cannot recover, in the calling goroutine or in the store's
// writer or sweeper; at Open it would be a crash loop on every restart.
func TestDamagedFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 50 child processes")
	}
	if len(damagedVariants) != 50 {
		t.Fatalf("%d variants; the issue asks for 50", len(damagedVariants))
	}
	dir := t.TempDir()
	base := os.Getenv(damagedBaseEnv)
	if base == "" {
		base = filepath.Join(dir, "tokens.db")
	}
	if _, err := os.Stat(base); err != nil {
		makeTokenFile(t, base)
	}
	good, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	l := readLayout(t, good)
	t.Logf("token file: %d bytes, %d-byte pages, %d leaves under the branch root, %d free pages",
		len(good), l.psize, len(l.leaves), l.freeCnt)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	modes := []string{"open"}
	if os.Getenv(damagedUncheckedEnv) != "" {
		// Open's check would move every damaged file aside before the
		// store uses it: also use each one unchecked, to reach the
		// guards around every call and background goroutine.
		modes = append(modes, "unchecked")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { runDamaged(t, exe, filepath.Join(dir, mode), good, l, mode) })
	}
}

// cycles are the variants only Open's check can keep from the process:
// bbolt loops on them (to a stack overflow or forever), which no recover
// stops.
var cycles = map[string]bool{"branch-child-is-self": true}

// damagedUncheckedEnv, set by a test run, adds the unchecked mode to
// TestDamagedFiles (it needs the test-only WithoutOpenCheck).
const damagedUncheckedEnv = "BOLTSTORE_TEST_DAMAGED_UNCHECKED"

func runDamaged(t *testing.T, exe, dir string, good []byte, l layout, mode string) {
	counts := map[string]int{}
	for _, v := range damagedVariants {
		path := filepath.Join(dir, v.name, "tokens.db")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		f := v.damage(bytes.Clone(good), l)
		if err := os.WriteFile(path, f, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), damagedEnv+"="+mode+":"+path)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		outcome := "served"
		switch {
		case timedOut:
			outcome = "hung"
		case err != nil:
			outcome = "crashed"
		case bytes.Contains(out, []byte("RESULT open=refused")):
			outcome = "refused"
		case bytes.Contains(out, []byte("RESULT open=moved")):
			outcome = "moved aside"
		}
		counts[outcome]++
		last := string(out)
		if (outcome == "crashed" || outcome == "hung") && mode == "unchecked" && cycles[v.name] {
			t.Logf("%s: %s, as expected without Open's check (a cycle: no recover catches a stack overflow or an endless loop)", v.name, outcome)
			continue
		}
		if outcome == "crashed" || outcome == "hung" {
			first, _, _ := strings.Cut(last, "\n\ngoroutine ")
			t.Errorf("%s: %s: %v\n%s", v.name, outcome, err, truncateText(first, 600))
			continue
		}
		t.Logf("%s: %s: %s", v.name, outcome, strings.TrimSpace(resultLine(last)))
	}
	t.Logf("%s: of %d damaged files: %d crashed, %d hung, %d refused at Open, %d moved aside, %d served",
		mode, len(damagedVariants), counts["crashed"], counts["hung"], counts["refused"], counts["moved aside"], counts["served"])
}

func resultLine(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "RESULT ") {
			return line
		}
	}
	return "(no result line)"
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// useDamaged is the child of TestDamagedFiles: it opens path and uses the
// store as an application would, then reports what happened on one line.
// It returns 0 whatever the store answered: only a crash is a failure.
func useDamaged(arg string) int {
	mode, path, _ := strings.Cut(arg, ":")
	ctx := context.Background()
	var skew atomic.Int64 // added to the clock to expire everything for the sweeper
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	opts := []boltstore.Option{boltstore.WithClock(clock), boltstore.WithSweepInterval(5 * time.Millisecond),
		boltstore.WithLockTimeout(time.Second)}
	if mode == "unchecked" {
		opts = append(opts, uncheckedOption())
	}
	s, err := boltstore.Open(path, opts...)
	if err != nil {
		fmt.Printf("RESULT open=refused: %v\n", err)
		return 0
	}
	open := "ok"
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) > 0 {
		open = "moved"
	}
	var keys []string
	listErr := s.List(ctx, "", func(k string) error { keys = append(keys, k); return nil })
	loads, failed := 0, 0
	versions := map[string]driver.Version{}
	for _, k := range keys {
		if _, v, err := s.Load(ctx, k); err == nil {
			loads++
			versions[k] = v
		} else {
			failed++
		}
		_, _ = s.Version(ctx, k)
		_, _ = s.Lifetime(ctx, k)
	}
	writes := 0
	for i := range 20 {
		if _, err := s.Save(ctx, fmt.Sprintf("new-%02d", i), bytes.Repeat([]byte{'v'}, 3000), driver.NoVersion, time.Hour); err == nil {
			writes++
		}
	}
	for k, v := range versions {
		if _, err := s.Save(ctx, k, []byte("renewed"), v, time.Hour); err == nil {
			writes++
		}
	}
	for i, k := range keys {
		if i%3 == 0 {
			if err := s.Delete(ctx, k); err == nil {
				writes++
			}
		}
	}
	// Expire everything and let the sweeper delete it.
	var swept atomic.Int64
	stop, watchErr := s.Watch(ctx, func(c driver.Change) {
		if c.Kind == driver.ChangeKey {
			swept.Add(1)
		}
	})
	skew.Store(int64(365 * 24 * time.Hour))
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline) && swept.Load() == 0; {
		time.Sleep(5 * time.Millisecond)
	}
	if watchErr == nil {
		stop()
	}
	closeErr := s.Close()
	fmt.Printf("RESULT open=%s keys=%d (list err %v) loads=%d failed=%d writes=%d swept=%d close=%v\n",
		open, len(keys), listErr != nil, loads, failed, writes, swept.Load(), closeErr)
	return 0
}
