package boltstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultCheckTimeout bounds Check (and the check Open makes) when its
// ctx has no earlier deadline: a token cache is kilobytes to megabytes and
// checks in milliseconds, so a check still running after this long is
// reading a file too large, or too damaged, to be worth waiting for.
const DefaultCheckTimeout = 10 * time.Second

// ErrDamaged reports a file that fails the consistency check: its pages do
// not form a valid bbolt tree, or reading it made bbolt panic. The error
// lists what is wrong (page numbers and sizes, never keys or values).
var ErrDamaged = errors.New("boltstore: the file is damaged")

// maxProblems is how many problems a check error lists.
const maxProblems = 5

// Check opens the bbolt file at path read-only (see WithReadOnly: it never
// creates or changes the file, and a missing file is an error wrapping
// fs.ErrNotExist) and runs the consistency check of Store.Check on it. It
// is what the msalcache command's doctor runs. opts may name the bucket
// or the lock timeout.
func Check(ctx context.Context, path string, opts ...Option) error {
	s, err := Open(path, append(opts[:len(opts):len(opts)], WithReadOnly())...)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Check(ctx)
}

// Check checks the store's file: first its structure, read with plain
// bounds-checked reads (every page number in range and of the right kind,
// every element inside its page, no page reached twice, none both in use
// and free, none lost), then with bbolt's own consistency check (keys in
// order) in a read transaction, for at most DefaultCheckTimeout or until ctx ends. A
// damaged file fails with an error wrapping ErrDamaged that lists up to
// five problems; a check that did not finish in time fails with an error
// wrapping context.DeadlineExceeded (the file was not found damaged, nor
// found sound). A panic from bbolt while reading the file is reported as
// damage, never passed on.
func (s *Store) Check(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.calls.Done()
	if !s.readOnly {
		// verifyFile reads the file itself: hold off the writer and the
		// sweeper, so that it sees committed transactions only.
		s.tellMu.Lock()
		defer s.tellMu.Unlock()
	}
	if pe := s.broken.Load(); pe != nil {
		return s.brokenError(pe)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultCheckTimeout)
	defer cancel()
	if _, err := verifyFile(ctx, s.path, s.bucket); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("boltstore: check %s: not finished in time: %w", s.path, ctx.Err())
		}
		return fmt.Errorf("boltstore: check %s: %w", s.path, err)
	}
	return checkDB(ctx, s.db, s.path)
}

// checkDB runs the check of Store.Check on db, the file at path.
func checkDB(ctx context.Context, db *bolt.DB, path string) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultCheckTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// The check keeps its read transaction until bbolt's checker has
		// finished, even after the caller gave up waiting: closing the
		// transaction (and then the file) under a checker still reading
		// the memory map would fault.
		done <- guard("check", func() error {
			return db.View(func(tx *bolt.Tx) error {
				var problems []string
				n := 0
				for err := range tx.Check(bolt.WithKVStringer(sizeStringer{})) {
					n++
					if len(problems) < maxProblems {
						problems = append(problems, err.Error())
					}
				}
				if n == 0 {
					return nil
				}
				more := ""
				if n > len(problems) {
					more = fmt.Sprintf(" (and %d more)", n-len(problems))
				}
				return fmt.Errorf("%w: %s%s", ErrDamaged, strings.Join(problems, "; "), more)
			})
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("boltstore: check %s: %w", path, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("boltstore: check %s: not finished in time: %w", path, ctx.Err())
	}
}

// sizeStringer shows keys and values in bbolt's check messages by their
// size only: keys derive from user identities, values hold tokens.
type sizeStringer struct{}

func (sizeStringer) KeyToString(k []byte) string   { return fmt.Sprintf("<%d-byte key>", len(k)) }
func (sizeStringer) ValueToString(v []byte) string { return fmt.Sprintf("<%d-byte value>", len(v)) }
