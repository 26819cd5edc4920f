// Package driver is the contract between msalcache and the stores and
// protectors it drives: what a store author implements, what an
// application never needs to name. It is to msalcache what gocloud.dev's
// blob/driver is to blob.
//
// A store implements [Store]: Load, Save with compare-and-set on a
// [Version], Delete and Close, reporting [ErrNotFound], [ErrConflict],
// [ErrTooLarge], [ErrCorrupt] and [ErrClosed] wrapped so that errors.Is
// finds them. Everything else is optional; the Adapter (and the operator
// CLI) discovers it by type assertion and does without it when absent:
//
//   - [ContextBounder]: every call returns once ctx is done (else the
//     Adapter calls the store on a goroutine it can abandon);
//   - [Watcher]: reports changes, so that an L1 can trust what it holds
//     ([Change], [ErrWatchDenied]);
//   - [Versioner]: a key's version without its value, to revalidate cheaply;
//   - [DurableSaver]: a write confirmed on a replica ([ErrNotReplicated]);
//   - [Lister], [Lifetimer] ([NoExpiry]): for operator tooling that inspects
//     and migrates a store;
//   - [Pinger], [SystemNamer], [Volatile], [Sharded]: health checks, the
//     store's name in metrics, stores that may drop keys early, stores
//     spread over servers that fail on their own.
//
// A [Protector] encrypts what the Adapter stores; [Reprotector] and
// [KeyHasher] are its optional capabilities. Package protect implements
// all three.
//
// Package conformance holds the suites every store and protector must
// pass; run them from the store's tests.
package driver
