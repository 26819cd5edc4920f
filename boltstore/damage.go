package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// A damaged file must never take the application down: the store is a
// cache, whose contents can always be bought again, and a crash at Open
// would be a crash loop on every restart. So Open checks the file before
// bbolt walks it (verifyFile, then bbolt's own check) and moves a damaged
// one aside; and every call into bbolt runs under guard, which turns a
// panic, or a fault reading the memory map, into an error.

// panicError is a panic from bbolt turned into an error by guard.
type panicError struct {
	op  string
	msg string
}

func (e *panicError) Error() string {
	return fmt.Sprintf("%v: bbolt panicked during %s: %s", ErrDamaged, e.op, e.msg)
}

func (e *panicError) Unwrap() error { return ErrDamaged }

// guard runs fn, which calls into bbolt, and turns a panic into a
// *panicError. bbolt trusts its file: a damaged page makes it panic
// ("assertion failed", "invalid freelist page", "page already freed") or
// read outside the memory map, which SetPanicOnFault turns from a fatal
// fault into a panic this goroutine can recover.
func guard(op string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{op: op, msg: panicText(r)}
		}
	}()
	return fn()
}

var hexRun = regexp.MustCompile(`[0-9a-fA-F]{17,}`)

// panicText is a panic value as text fit for a log: at most 200 bytes,
// long hex runs (bbolt prints some keys in hex) elided.
func panicText(r any) string {
	msg := hexRun.ReplaceAllString(fmt.Sprint(r), "…")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// guard runs fn under guard. The first panic marks the store broken: a
// panic may leave bbolt's locks held and its memory inconsistent, so from
// then on every call fails at once, without touching bbolt, with an error
// wrapping ErrDamaged (the store answers as a failed store does, which
// the Adapter's breaker and miss paths handle). It is logged once.
func (s *Store) guard(op string, fn func() error) error {
	if pe := s.broken.Load(); pe != nil {
		return s.brokenError(pe)
	}
	err := guard(op, fn)
	var pe *panicError
	if errors.As(err, &pe) {
		if s.broken.CompareAndSwap(nil, pe) {
			s.logger.Error("boltstore: bbolt panicked on a damaged file; every call fails until the application restarts, when Open moves the file aside",
				"path", s.path, "op", op, "panic", pe.msg)
		}
		return s.brokenError(s.broken.Load())
	}
	return err
}

func (s *Store) brokenError(pe *panicError) error {
	return fmt.Errorf("boltstore: %s: %w; the store fails every call until the application restarts (Open then moves the file aside)", s.path, pe)
}

// view and update are bbolt's View and Update under s.guard.
func (s *Store) view(op string, fn func(*bolt.Tx) error) error {
	return s.guard(op, func() error { return s.db.View(fn) })
}

func (s *Store) update(op string, fn func(*bolt.Tx) error) error {
	return s.guard(op, func() error { return s.db.Update(fn) })
}

// closeTimeout bounds closing a file on which bbolt panicked: the panic
// may have left a transaction's lock held, on which bbolt's Close would
// wait forever.
const closeTimeout = 2 * time.Second

// closeDB closes the bbolt file.
func (s *Store) closeDB() error {
	done := make(chan error, 1)
	go func() { done <- guard("close", s.db.Close) }()
	if s.broken.Load() == nil {
		if err := <-done; err != nil {
			return fmt.Errorf("boltstore: close %s: %w", s.path, err)
		}
		return nil
	}
	select {
	case <-done:
		return nil // the damage was reported already
	case <-time.After(closeTimeout):
		return fmt.Errorf("boltstore: close %s: bbolt did not let go of the damaged file within %v; it stays open (and locked) until the process exits", s.path, closeTimeout)
	}
}

// isDamage reports whether err, from bolt.Open, says the file is not a
// usable bbolt file (rather than locked, unreadable or missing).
func isDamage(err error) bool {
	return errors.Is(err, ErrDamaged) || errors.Is(err, bolterrors.ErrInvalid) ||
		errors.Is(err, bolterrors.ErrVersionMismatch) || errors.Is(err, bolterrors.ErrChecksum) ||
		strings.Contains(err.Error(), "file size too small")
}

// openError is the error of Open for err from bolt.Open.
func openError(path string, err error, c *config) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%w: %s is held by another process, or by another Store in this process "+
			"(waited %v for its lock); only one may use a bbolt file at a time", ErrLocked, path, c.lockTimeout)
	}
	return fmt.Errorf("boltstore: open %s: %w", path, err)
}

// preflight checks the existing file at path before the store opens it.
// It returns the bbolt handle it checked the file with when that is the
// one to use (a read-only store), or nil when Open must open the file
// itself: it did not exist, was empty (bbolt makes a new one of it), or
// was damaged and moved aside. A damaged file is refused instead with
// WithRefuseDamaged or WithReadOnly, which never write.
func preflight(path string, bucket []byte, c *config) (*bolt.DB, error) {
	if c.skipCheck {
		return nil, nil
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && (!fi.Mode().IsRegular() || fi.Size() == 0 && !c.readOnly) {
		return nil, nil // bbolt creates it, makes a new file of it, or says what it is not
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCheckTimeout)
	defer cancel()
	db, rep, damage, err := inspect(ctx, path, bucket, c)
	if err != nil {
		return nil, err
	}
	if damage == nil {
		if c.readOnly {
			return db, nil
		}
		if err := guard("close", db.Close); err != nil {
			return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
		}
		return nil, nil
	}
	rep.size = fi.Size()
	if !looksLikeBolt(path) {
		// A path that names some other file by mistake: never move it.
		return nil, fmt.Errorf("boltstore: open %s: not a bbolt file (no bbolt meta page; %v); check the path: "+
			"the store moves only a damaged bbolt file aside, never another kind of file", path, damage)
	}
	if c.readOnly {
		return nil, fmt.Errorf("boltstore: open %s read-only: %w. Nothing was changed; the application moves a damaged file aside "+
			"when it next opens it, or move it aside yourself (the cache is rebuilt as users sign in)", path, damage)
	}
	if c.refuseDamaged {
		return nil, fmt.Errorf("boltstore: open %s: %w. Move the file aside or delete it (the cache is rebuilt as users sign in), "+
			"or omit WithRefuseDamaged to have Open do so", path, damage)
	}
	moved, err := moveAside(path, c.now())
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w, and moving it aside failed: %v; move or delete the file by hand", path, damage, err)
	}
	c.logger.Error("boltstore: the token file is damaged; moved it aside and started an empty one (its tokens are lost: users sign in again, apps acquire new tokens)",
		"path", path, "moved_to", moved, "damage", damage.Error(), "records_seen", rep.records, "bytes", rep.size)
	return nil, nil
}

// inspect opens the file read-only (a shared lock: no writer can change
// it meanwhile) and checks it: first its structure (verifyFile, which
// never lets bbolt walk a page), then bbolt's own check. damage is the
// reason the file is unusable; err a reason it could not be looked at
// (locked, unreadable). db, open read-only, is returned when the file is
// sound.
func inspect(ctx context.Context, path string, bucket []byte, c *config) (db *bolt.DB, rep fileReport, damage, err error) {
	err = guard("open", func() error {
		var err error
		db, err = bolt.Open(path, fileMode, &bolt.Options{ReadOnly: true, Timeout: c.lockTimeout})
		return err
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) || !isDamage(err) {
			return nil, rep, nil, openError(path, err, c)
		}
		return nil, rep, err, nil
	}
	fail := func(damage, err error) (*bolt.DB, fileReport, error, error) {
		_ = guard("close", db.Close)
		return nil, rep, damage, err
	}
	rep, err = verifyFile(ctx, path, bucket)
	switch {
	case errors.Is(err, ErrDamaged):
		return fail(err, nil)
	case ctx.Err() != nil:
		c.logger.Warn("boltstore: the file's check did not finish in time; using it unchecked", "path", path, "bytes", rep.size)
		return db, rep, nil, nil
	case err != nil:
		return fail(nil, fmt.Errorf("boltstore: open %s: check: %w", path, err))
	}
	if err := checkDB(ctx, db, path); err != nil {
		if errors.Is(err, ErrDamaged) {
			return fail(err, nil)
		}
		c.logger.Warn("boltstore: bbolt's check of the file did not finish; using it", "path", path, "bytes", rep.size, "err", err)
	}
	return db, rep, nil, nil
}

// looksLikeBolt reports whether the file at path has bbolt's magic number
// where a meta page starts (valid or not), as a bbolt file, even a damaged
// one, does and any other file almost never does.
func looksLikeBolt(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	for _, off := range []int64{0, 1024, 2048, 4096, 8192, 16384, 32768, 65536} {
		if _, err := f.ReadAt(b[:], off+pgHdrLen); err == nil && binary.LittleEndian.Uint32(b[:]) == boltMagic {
			return true
		}
	}
	return false
}

// moveAside renames the damaged file at path to path.damaged-<UTC time>,
// readable by its owner only, and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".damaged-" + now.UTC().Format("20060102T150405Z")
	moved := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(moved); errors.Is(err, fs.ErrNotExist) {
			break
		}
		moved = fmt.Sprintf("%s.%d", base, i)
	}
	if err := os.Rename(path, moved); err != nil {
		return "", err
	}
	// Open tightened the file to 0600 already; this covers a file made
	// otherwise in between, and failing it must not fail Open.
	_ = os.Chmod(moved, fileMode)
	return moved, nil
}
