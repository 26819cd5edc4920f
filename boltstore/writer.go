package boltstore

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/msalcache/msalcache"
	bolt "go.etcd.io/bbolt"
)

// Group commit. bbolt allows one write transaction at a time and each one
// ends in an fsync, so committing every Save on its own caps throughput at
// one write per fsync no matter how many goroutines write. bbolt's
// DB.Batch coalesces writers but holds each batch open for MaxBatchDelay
// (10ms) first, which would make every lone Save take at least that long;
// MSAL calls Export under its exclusive lock, so that delay would stall
// every token write of the client. Instead one goroutine owns writing: it
// takes the first waiting write, plus whatever else is queued at that
// moment, and commits them in one transaction. A lone writer waits for no
// timer; N concurrent writers share roughly one fsync.
//
// As with DB.Batch, a transaction may run an operation more than once (when
// another operation in the batch fails and the batch is retried without
// it), so apply sets every result afresh and results are read only after
// the transaction that produced them committed.

const (
	maxBatchOps   = 256          // operations per transaction
	maxBatchBytes = MaxValueSize // record bytes per transaction, beyond the first
)

// Operation states: a caller whose ctx ends while its operation waits in
// the queue abandons it, and the writer skips it. Once the writer has taken
// it, the caller waits for the outcome, so a Save that reports a ctx error
// has not been written and one that reports success has.
const (
	opPending int32 = iota
	opTaken
	opAbandoned
)

type writeOp struct {
	ctx       context.Context
	key       []byte
	record    []byte // nil for a delete
	ifVersion driver.Version
	save      bool

	state atomic.Int32
	done  chan struct{}

	// Results, written by the writer before done is closed.
	version driver.Version
	err     error
}

// write queues op for the writer and waits for its outcome.
func (s *Store) write(ctx context.Context, op *writeOp) error {
	op.done = make(chan struct{})
	select {
	case s.writes <- op:
	case <-ctx.Done():
		return fmt.Errorf("boltstore: %w", ctx.Err())
	}
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
		if op.state.CompareAndSwap(opPending, opAbandoned) {
			return fmt.Errorf("boltstore: %w", ctx.Err())
		}
		<-op.done // already in a transaction: report what happened
		return op.err
	}
}

// writer commits queued operations until Close. Close first waits for
// every call to return, so nothing waits on an operation left in the queue
// when stop is closed (only abandoned ones can be there).
func (s *Store) writer() {
	defer s.bg.Done()
	batch := make([]*writeOp, 0, maxBatchOps)
	for {
		select {
		case <-s.stop:
			return
		case op := <-s.writes:
			batch = append(batch[:0], op)
			size := len(op.record)
		drain:
			for len(batch) < maxBatchOps && size < maxBatchBytes {
				select {
				case op := <-s.writes:
					batch = append(batch, op)
					size += len(op.record)
				default:
					break drain
				}
			}
			s.commit(batch)
			clear(batch[:cap(batch)])
		}
	}
}

// commit applies ops in one write transaction and closes every op's done
// channel. An operation that makes bbolt fail is reported alone and the
// rest are retried without it, so one bad write does not fail its
// neighbours. Every watcher is told of every committed write before any
// done channel of the transaction is closed, so that a Save or Delete
// returns only once every L1 in the process knows of it.
func (s *Store) commit(ops []*writeOp) {
	s.tellMu.Lock()
	defer s.tellMu.Unlock()
	for len(ops) > 0 {
		failed := -1
		err := s.update("write", func(tx *bolt.Tx) error {
			b, err := s.bucketOf(tx)
			if err != nil {
				return err
			}
			now := s.now().UnixNano()
			for i, op := range ops {
				if err := op.apply(b, now); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 && s.broken.Load() == nil {
			op := ops[failed]
			op.version, op.err = driver.NoVersion, fmt.Errorf("boltstore: write: %w", err)
			close(op.done)
			ops = slices.Delete(ops, failed, failed+1)
			continue
		}
		if err == nil && len(s.watchers) > 0 {
			for _, op := range ops {
				if op.err == nil {
					s.tellLocked(driver.Change{Kind: driver.ChangeKey, Key: string(op.key), Version: op.version})
				}
			}
		}
		for _, op := range ops {
			if err != nil && op.err == nil {
				op.version, op.err = driver.NoVersion, fmt.Errorf("boltstore: write: %w", err)
			}
			close(op.done)
		}
		return
	}
}

// apply performs op in the write transaction behind b. It records the
// operation's own outcome (success, conflict, cancellation) in op and
// returns only errors from bbolt, which abort the transaction.
func (op *writeOp) apply(b *bolt.Bucket, now int64) error {
	op.version, op.err = driver.NoVersion, nil
	if op.state.Load() != opTaken && !op.state.CompareAndSwap(opPending, opTaken) {
		op.err = errAbandoned // nobody is waiting for it
		return nil
	}
	if err := op.ctx.Err(); err != nil {
		op.err = fmt.Errorf("boltstore: %w", err)
		return nil
	}
	if !op.save {
		return b.Delete(op.key)
	}
	cur := driver.NoVersion
	if raw := b.Get(op.key); raw != nil {
		// A corrupt record counts as absent, so NoVersion replaces it.
		if rec, err := decodeRecord(raw); err == nil && rec.live(now) {
			cur = rec.version
		}
	}
	if cur != op.ifVersion {
		op.err = driver.ErrConflict
		return nil
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	setVersion(op.record, driver.Version(seq))
	if err := b.Put(op.key, op.record); err != nil {
		return err
	}
	op.version = driver.Version(seq)
	return nil
}

var errAbandoned = fmt.Errorf("boltstore: write abandoned")
