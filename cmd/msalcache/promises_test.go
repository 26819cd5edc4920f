package main

import (
	"context"
	"crypto/sha256"
	le "encoding/binary"
	"encoding/json"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/internal/testserver"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
)

// fileState is what a command that only reads must leave as it was: a
// file's bytes and mtime, and the names in its directory.
type fileState struct {
	sum   [32]byte
	mtime time.Time
	names []string
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{sha256.Sum256(b), fi.ModTime(), dirNames(t, filepath.Dir(path))}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func (s fileState) same(t *testing.T, path, after string) {
	t.Helper()
	now := stateOf(t, path)
	if now.sum != s.sum {
		t.Fatalf("%s changed the bytes of %s", after, path)
	}
	if !now.mtime.Equal(s.mtime) {
		t.Fatalf("%s changed the mtime of %s (%v -> %v)", after, path, s.mtime, now.mtime)
	}
	if !slices.Equal(now.names, s.names) {
		t.Fatalf("%s created files: %v -> %v", after, s.names, now.names)
	}
}

// TestReadCommandsWriteNothing runs every command that only reads, and a
// few that fail, on a bbolt file, and checks that the file's bytes and
// mtime are unchanged and that no file appeared beside it.
func TestReadCommandsWriteNothing(t *testing.T) {
	f, path, env := boltFarm(t, 2)
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := protect.GenerateKeyFile(wrong); err != nil {
		t.Fatal(err)
	}
	// mtime has a coarse grain on some file systems: make any write show.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	st := stateOf(t, path)
	missingDst := filepath.Join(filepath.Dir(path), "dst.db")
	runs := []struct {
		code int
		env  []string
		args []string
	}{
		{0, env, []string{"doctor"}},
		{0, env, []string{"doctor", "-json"}},
		{0, env, []string{"stats"}},
		{0, env, []string{"inspect", "-partition", f.users[0].HomeAccountID}},
		{0, env, []string{"keys", "list"}},
		{0, env, []string{"rewrap", "-dry-run"}},
		{0, env, []string{"rm", "-dry-run", "-partition", f.users[0].HomeAccountID}},
		{0, env, []string{"rm", "-dry-run", "-expired"}},
		{0, env, []string{"migrate", "-dry-run", "-ring", "-to", "bbolt://" + missingDst}},
		{1, env, []string{"inspect", "-key", "tc/default/absent"}},
		{1, env, []string{"rm", "-key", ringadmin.RingKey}},
		{1, env, []string{"ring", "reset"}},
		{1, []string{env[0], "MSALCACHE_KEK_FILE=" + wrong}, []string{"keys", "list"}},
		{1, []string{env[0], "MSALCACHE_KEK_FILE=" + wrong}, []string{"doctor"}},
		{1, []string{env[0], "MSALCACHE_KEK_FILE=" + wrong}, []string{"stats"}},
	}
	for _, r := range runs {
		f.cli(r.env, r.args...).must(t, r.code)
		st.same(t, path, strings.Join(r.args, " "))
	}
	// The file is still the farm's: every user served from it.
	f.cli(env, "stats").must(t, 0)
}

// TestMissingBoltFile: a mistyped path is an error for every command
// that reads, doctor FAILs on it, and no file is created.
func TestMissingBoltFile(t *testing.T) {
	f := &farm{t: t}
	dir := t.TempDir()
	missing := filepath.Join(dir, "tokns.db")
	env := []string{"MSALCACHE_STORE=bbolt://" + missing}
	for _, args := range [][]string{{"stats"}, {"inspect", "-key", "tc/default/x"}, {"keys", "list"}, {"rewrap", "-dry-run"}, {"migrate", "-dry-run", "-to", "redis://127.0.0.1:1"}} {
		r := f.cli(env, args...).must(t, 1)
		if !strings.Contains(r.stderr, "no bbolt file at "+missing) {
			t.Fatalf("%v on a missing file:\n%s", args, r.stderr)
		}
	}
	r := f.cli(env, "doctor").must(t, 1)
	if !strings.HasPrefix(r.stdout, "FAIL") || !strings.Contains(r.stdout, "no bbolt file") {
		t.Fatalf("doctor on a missing file:\n%s", r.stdout)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("read commands created %v", names)
	}
}

// TestRmGuardsTheRing: rm refuses a key ring record without -yes.
func TestRmGuardsTheRing(t *testing.T) {
	f, _, env := boltFarm(t, 1)
	for _, k := range []string{ringadmin.RingKey, ringadmin.MarkerKey(ringadmin.RingKey)} {
		r := f.cli(env, "rm", "-key", k).must(t, 1)
		if !strings.Contains(r.stderr, "key ring record") || !strings.Contains(r.stderr, "-yes") {
			t.Fatalf("rm -key %s:\n%s", k, r.stderr)
		}
		r = f.cli(env, "rm", "-dry-run", "-key", k).must(t, 0)
		if !strings.Contains(r.stdout, "would refuse") {
			t.Fatalf("rm -dry-run -key %s:\n%s", k, r.stdout)
		}
	}
	f.cli(env, "doctor").must(t, 0) // the ring is whole
	f.cli(env, "rm", "-yes", "-key", ringadmin.RingKey).must(t, 0)
	r := f.cli(env, "doctor").must(t, 1)
	if !strings.Contains(r.stdout, "missing") {
		t.Fatalf("doctor after rm -yes of the ring:\n%s", r.stdout)
	}
}

// TestMigrateRingNeedsPersistence: migrate -ring refuses a Redis that
// does not persist unless -force, says "would" in a dry run, and copies
// into one that persists.
func TestMigrateRingNeedsPersistence(t *testing.T) {
	f, _, env := boltFarm(t, 2)
	volatile := "redis://" + redisServer(t)
	r := f.cli(env, "migrate", "-ring", "-to", volatile).must(t, 1)
	if !strings.Contains(r.stderr, "does not persist") || !strings.Contains(r.stderr, "-force") {
		t.Fatalf("migrate -ring into a Redis without persistence:\n%s", r.stderr)
	}
	f.cli(env, "migrate", "-ring", "-dry-run", "-to", volatile).must(t, 1)
	dst, err := storeurl.Open(context.Background(), volatile)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if n, err := dst.Redis.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("a refused migrate wrote %d keys (%v)", n, err)
	}
	f.cli(env, "migrate", "-ring", "-force", "-to", volatile).must(t, 0)

	durable := "redis://" + testserver.Redis(t, testserver.RedisArgs("--appendonly", "yes")).Addr()
	for _, args := range [][]string{{"migrate", "-ring", "-dry-run", "-to", durable}, {"migrate", "-ring", "-dry-run", "-json", "-to", durable}} {
		r := f.cli(env, args...).must(t, 0)
		if strings.Contains(r.stdout, "copied") || !strings.Contains(r.stdout, "would") {
			t.Fatalf("%v says what it did not do:\n%s", args, r.stdout)
		}
	}
	r = f.cli(env, "migrate", "-ring", "-json", "-to", durable).must(t, 0)
	var out migrateOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.RingCopied != "copied" || out.Copied != 3 || out.Verified != 3 {
		t.Fatalf("migrate into a persistent Redis: %s", r.stdout)
	}
	// A second dry run sees what the destination holds.
	r = f.cli(env, "migrate", "-ring", "-dry-run", "-to", durable).must(t, 0)
	if !strings.Contains(r.stdout, "would copy 0, would keep 3") || !strings.Contains(r.stdout, "key ring: would keep") {
		t.Fatalf("second dry run:\n%s", r.stdout)
	}
}

// TestKEKProblems: a KEK that cannot be read or does not unwrap the ring
// is reported as a KEK problem, first and briefly, never as a store
// failure.
func TestKEKProblems(t *testing.T) {
	f, _, env := boltFarm(t, 1)
	store := env[0]
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose")
	if err := protect.GenerateKeyFile(loose); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	if err := protect.GenerateKeyFile(wrong); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"bad base64", []string{store, "MSALCACHE_KEK=not*base64*at*all"}, "$MSALCACHE_KEK"},
		{"0644 key file", []string{store, "MSALCACHE_KEK_FILE=" + loose}, "chmod 600"},
		{"missing key file", []string{store, "MSALCACHE_KEK_FILE=" + filepath.Join(dir, "absent")}, "-kek-file"},
		{"wrong KEK", []string{store, "MSALCACHE_KEK_FILE=" + wrong}, "this KEK does not unwrap the key ring: wrong key for KEK id \"" + kekID + "\"?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, cmd := range [][]string{{"keys", "list"}, {"stats"}, {"inspect", "-partition", f.users[0].HomeAccountID}} {
				r := f.cli(c.env, cmd...).must(t, 1)
				prefix := "msalcache " + cmd[0] + ": KEK problem: "
				if !strings.HasPrefix(r.stderr, prefix) || !strings.Contains(r.stderr, c.want) {
					t.Fatalf("%v: want %q then %q:\n%s", cmd, prefix, c.want, r.stderr)
				}
				if strings.Contains(r.stderr, "fix the URL") || strings.Contains(r.stderr, "does not answer") || len(r.stderr) > 400 {
					t.Fatalf("%v: not brief, or blames the store:\n%s", cmd, r.stderr)
				}
			}
			r := f.cli(c.env, "doctor").must(t, 1)
			lines := strings.Split(r.stdout, "\n")
			first := strings.Fields(lines[0])
			if len(first) < 2 || first[0] != "FAIL" || first[1] != "kek" || !strings.Contains(r.stdout, c.want) {
				t.Fatalf("doctor: want FAIL kek first:\n%s", r.stdout)
			}
			if strings.Contains(r.stdout, "fix the URL") {
				t.Fatalf("doctor blames the store for a KEK problem:\n%s", r.stdout)
			}
			if c.name != "wrong KEK" && !strings.Contains(r.stdout, "answers in") {
				t.Fatalf("doctor stopped at the KEK instead of checking the store too:\n%s", r.stdout)
			}
		})
	}
}

// TestHelpAndExitCodes: help works, -h lists the store URL forms, and
// the exit codes are those documented (0, 1 failure, 2 usage).
func TestHelpAndExitCodes(t *testing.T) {
	f := &farm{t: t}
	for _, args := range [][]string{{"help"}, {"-h"}, {"help", "help"}} {
		r := f.cli(nil, args...).must(t, 0)
		for _, want := range []string{"bbolt:///", "redis://", "rediss://", "redis+cluster://", "redis+sentinel://", "memcache://", "doctor", "exit status"} {
			if !strings.Contains(r.stderr, want) {
				t.Fatalf("%v lacks %q:\n%s", args, want, r.stderr)
			}
		}
	}
	for _, c := range commands {
		r := f.cli(nil, "help", c.name).must(t, 0)
		if !strings.Contains(r.stderr, "usage: msalcache "+c.name) || !strings.Contains(r.stderr, "redis+sentinel://") {
			t.Fatalf("help %s:\n%s", c.name, r.stderr)
		}
	}
	f.cli(nil, "help", "nope").must(t, 2)
	f.cli(nil, "help", "doctor", "stats").must(t, 2)
	for _, c := range []string{"doctor", "stats", "inspect", "rewrap", "migrate", "rm", "ring"} {
		args := []string{c}
		switch c {
		case "inspect":
			args = append(args, "-key", "k")
		case "migrate":
			args = append(args, "-to", "redis://127.0.0.1:1")
		case "rm":
			args = append(args, "-expired")
		case "ring":
			args = append(args, "reset")
		}
		r := f.cli(nil, args...).must(t, 2) // no store
		if !strings.Contains(r.stderr, "no store") {
			t.Fatalf("%v with no store:\n%s", args, r.stderr)
		}
	}
	f.cli(nil, "keys", "list").must(t, 2)
	f.cli(nil, "-no-such-flag").must(t, 2)
	f.cli(nil, "doctor", "-no-such-flag").must(t, 2)
	f.cli(nil, "doctor", "-store", "redis://127.0.0.1:1", "-timeout", "1s").must(t, 1)
	f.cli(nil, "doctor", "-store", "nope://x").must(t, 1)
}

// TestDoctorChecksTheFile: doctor runs bbolt's consistency check, and
// FAILs on a file whose pages were damaged, without writing to it, moving
// it or crashing; the other read commands refuse it as cleanly.
func TestDoctorChecksTheFile(t *testing.T) {
	damages := map[string]func(t *testing.T, b []byte){
		"lost page": damageHighWater,
		"page headers": func(t *testing.T, b []byte) {
			// Every page but the meta pages: flags and count.
			for p := 2 * 4096; p+16 <= len(b); p += 4096 {
				for i := 8; i < 12; i++ {
					b[p+i] = 0xff
				}
			}
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			f, path, env := boltFarm(t, 3)
			r := f.cli(env, "doctor").must(t, 0)
			if !strings.Contains(r.stdout, "passes bbolt's consistency check") {
				t.Fatalf("doctor does not check the file:\n%s", r.stdout)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) < 5*4096 {
				t.Fatalf("file of %d bytes", len(b))
			}
			damage(t, b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			st := stateOf(t, path)
			r = f.cli(env, "doctor").must(t, 1)
			if !strings.HasPrefix(r.stdout, "FAIL") || !strings.Contains(r.stdout, "file") || strings.Contains(r.stderr, "panic") {
				t.Fatalf("doctor on a damaged file:\n%s\n%s", r.stdout, r.stderr)
			}
			st.same(t, path, "doctor on a damaged file")
			for _, args := range [][]string{{"stats"}, {"keys", "list"}, {"inspect", "-partition", f.users[0].HomeAccountID}} {
				r := f.cli(env, args...)
				if r.code != 1 || strings.Contains(r.stderr, "panic") {
					t.Fatalf("%v on a damaged file: exit %d\n%s", args, r.code, r.stderr)
				}
				st.same(t, path, strings.Join(args, " ")+" on a damaged file")
			}
		})
	}
}

// damageHighWater raises the page count both meta pages of a bbolt file
// record (and their checksums with it), so that a page is neither
// reachable nor free: the damage a lost write leaves, which bbolt's
// consistency check finds and opening the file does not.
func damageHighWater(t *testing.T, b []byte) {
	t.Helper()
	for _, m := range []int{16, 4096 + 16} {
		pageSize := int(le.LittleEndian.Uint32(b[m+8:]))
		if pageSize != 4096 {
			t.Fatalf("page size %d", pageSize)
		}
		pgid := le.LittleEndian.Uint64(b[m+40:])
		if int(pgid+1)*pageSize > len(b) {
			t.Fatalf("no room for one more page (%d pages, %d bytes)", pgid, len(b))
		}
		le.LittleEndian.PutUint64(b[m+40:], pgid+1)
		h := fnv.New64a()
		h.Write(b[m : m+56])
		le.LittleEndian.PutUint64(b[m+56:], h.Sum64())
	}
}
