// Package pgstore keeps msalcache values in PostgreSQL through pgx
// (github.com/jackc/pgx/v5), so that every instance of an application
// shares one token cache in the database it already runs, and an Adapter
// with msalcache.WithL1 stays coherent across the farm through
// LISTEN/NOTIFY.
//
//	pool, err := pgxpool.New(ctx, "postgres://app@db.example.com/app")
//	defer pool.Close()
//	store, err := pgstore.New(ctx, pool)
//	defer store.Close()
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring), msalcache.WithL1(msalcache.L1Options{}))
//
// # The table
//
// One table (DefaultTable, or the name given to WithTable) holds every
// key. New creates it, and its expiry index, when it does not exist yet;
// an operator who grants the application no DDL creates them beforehand:
//
//	CREATE TABLE msalcache (
//	    key        text COLLATE "C" PRIMARY KEY,
//	    value      bytea  NOT NULL,
//	    version    bigint NOT NULL,
//	    expires_at timestamptz
//	);
//	CREATE INDEX msalcache_expires_at ON msalcache (expires_at) WHERE expires_at IS NOT NULL;
//	GRANT SELECT, INSERT, UPDATE, DELETE ON msalcache TO app;
//
// (CREATE UNLOGGED TABLE for WithUnlogged.) The application's role then
// needs SELECT, INSERT, UPDATE and DELETE on the table and nothing else:
// NOTIFY needs no grant. `msalcache doctor` checks the table and the
// grants.
//
// # Compare-and-set and versions
//
// Every write draws a random non-zero 64-bit version (stored in the
// version column as a bigint of the same bits), as redisstore and
// memcachestore do: a version is in practice never reused for a key, even
// after a Delete or an expiry, so that a writer that read an old row
// cannot overwrite a newer one (the ABA problem), and no sequence needs a
// grant of its own. A Save with a version is one UPDATE … WHERE key = $1
// AND version = $n AND the row is live; a Save with driver.NoVersion is
// one INSERT … ON CONFLICT (key) DO UPDATE … WHERE the existing row has
// expired (or holds version 0, which no writer hands out: a row another
// program wrote, which Load reports as driver.ErrCorrupt), so the first
// write of a key and the write over an expired row are one statement.
// Either reports no row when the compare-and-set lost: driver.ErrConflict.
//
// # Expiry
//
// expires_at is the database's now() plus the TTL (to the microsecond), or
// NULL for no expiry. Every read filters on it, so a row is absent the
// moment it expires, whatever the sweep does. A background sweep deletes
// expired rows in batches of SweepBatch (each batch one short statement
// with FOR UPDATE SKIP LOCKED, so that the sweeps of a whole farm neither
// wait for each other nor hold long locks), every DefaultSweepInterval
// (WithSweepInterval). The clock is the database server's, so the
// application servers' clocks do not matter.
//
// # Watching changes
//
// Every Save and every Delete calls pg_notify in the same statement, hence
// in the same transaction, as its write: a watcher hears of a write once
// it is committed, never of one that rolled back. The channel is the
// table's name followed by "_changes", the payload the key, a space and
// the new version in hexadecimal ("0" for a delete). Store.Watch LISTENs
// on one connection of its own per Store (taken out of the pool, so that
// the pool's BeforeConnect, such as an Entra ID token callback, applies
// to it), checks it every half second, and when it fails (a server
// restart, a failover, a dropped connection) reports
// driver.ChangeWatchDown, so that the Adapter's L1 is flushed and
// bypassed: notifications sent while no connection listened are lost.
// It then reconnects, LISTENs again and reports ChangeWatchUp, after which
// the L1 fills and revalidates again.
//
// PostgreSQL serialises the commits of transactions that notify (a global
// lock on the notification queue, taken at commit), which costs little at
// a token cache's write rates. A listener that stops reading lets the
// queue (8 GB) fill; the watch reads continuously and its callbacks are
// quick.
//
// # UNLOGGED
//
// WithUnlogged creates the table UNLOGGED: writes skip the write-ahead log,
// so they are cheaper (no WAL flush per commit), but the table is emptied
// after a crash of the server and is not replicated to standbys, so a
// failover comes up with an empty cache. For tokens that is a refetch per
// user; the protect key ring must not live there, and the store then
// reports itself driver.Volatile, which the ring refuses.
//
// # Deadlines
//
// pgx bounds every call by ctx (it puts ctx's deadline on the socket, and
// interrupts the read when ctx is cancelled), and pgxpool bounds the wait
// for a connection by it, so the store is a driver.ContextBounder and
// the Adapter calls it directly. A Save interrupted that way may still
// have been committed; the next Load tells.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/netstore"
	"github.com/msalcache/msalcache/internal/storeopt"
)

// DefaultTable is the table the store keeps its keys in when WithTable is
// not given.
const DefaultTable = "msalcache"

// MaxValueSize is the largest value the store accepts: PostgreSQL holds at
// most 1 GiB in a bytea, and a message to the server may not be larger.
// Leave room for the rest of the statement.
const MaxValueSize = 1<<30 - 1<<20

// DefaultMaxValueSize is the limit Save enforces unless WithMaxValueSize
// says otherwise: an MSAL cache is a few kilobytes, and a value of tens of
// megabytes is a bug upstream that would be copied into the WAL and every
// standby.
const DefaultMaxValueSize = 64 << 20

// DefaultSweepInterval is how often the background sweep deletes expired
// rows unless WithSweepInterval says otherwise. Expired rows are invisible
// at once; the sweep only reclaims their space.
const DefaultSweepInterval = time.Minute

// SweepBatch is how many expired rows one statement of the sweep deletes.
const SweepBatch = 1000

// tableName is what WithTable accepts: an unquoted PostgreSQL identifier
// short enough that "<name>_changes" and "<name>_expires_at" stay within
// the 63 bytes of an identifier.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// ValidTable reports whether WithTable accepts name.
func ValidTable(name string) bool { return tableName.MatchString(name) }

// Store is an driver.Store backed by a PostgreSQL table. It also
// implements driver.Watcher (LISTEN/NOTIFY), driver.Versioner,
// driver.Lister, driver.Lifetimer, driver.Pinger,
// driver.SystemNamer, driver.ContextBounder and driver.Volatile
// (true only WithUnlogged). It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	config
	channel string
	q       queries
	closed  atomic.Bool
	watch   watchHub

	sweepStop context.CancelFunc
	sweepDone chan struct{}
	sweepMu   sync.Mutex // serialises sweeps of this Store (the timer's and Sweep's)
}

type config struct {
	table      string
	unlogged   bool
	create     bool
	maxValue   int
	sweepEvery time.Duration
	sweepOff   bool
	closePool  bool
}

// Option configures a Store.
type Option func(*config) error

// WithTable sets the table the store uses (default DefaultTable): an
// unquoted identifier of lower-case letters, digits and underscores, at
// most 48 bytes, found through the connection's search_path. Several
// applications can share a database with a table each.
func WithTable(name string) Option {
	return func(c *config) error {
		if !tableName.MatchString(name) {
			return fmt.Errorf("WithTable(%q): pass 1 to 48 lower-case letters, digits or underscores, not starting with a digit, or omit the option for %q", name, DefaultTable)
		}
		c.table = name
		return nil
	}
}

// WithUnlogged makes New create the table UNLOGGED: cheaper writes, but the
// table is emptied after a server crash and absent on a standby promoted
// by a failover (see the package documentation). The store then reports
// itself driver.Volatile, so the protect key ring refuses to live in it.
// It only matters when New creates the table; an existing table keeps its
// kind, which New reads.
func WithUnlogged() Option {
	return func(c *config) error {
		c.unlogged = true
		return nil
	}
}

// WithoutCreate makes New fail, naming the statements to run, instead of
// creating the table when it is absent, for a role that must not run DDL
// and a deployment that creates the table itself.
func WithoutCreate() Option {
	return func(c *config) error {
		c.create = false
		return nil
	}
}

// WithMaxValueSize sets the largest value Save accepts, 1 to MaxValueSize
// bytes; larger values fail with driver.ErrTooLarge before anything is
// sent.
func WithMaxValueSize(n int) Option {
	return func(c *config) error {
		if err := storeopt.Size("WithMaxValueSize", n, MaxValueSize,
			"PostgreSQL holds at most 1 GiB in a bytea", fmt.Sprintf("%d MiB", DefaultMaxValueSize>>20)); err != nil {
			return err
		}
		c.maxValue = n
		return nil
	}
}

// WithSweepInterval sets how often the background sweep deletes expired
// rows (default DefaultSweepInterval). Expired rows are invisible at once
// whatever the interval; it only bounds how long they take up space.
func WithSweepInterval(d time.Duration) Option {
	return func(c *config) error {
		if err := storeopt.Duration("WithSweepInterval", d, DefaultSweepInterval); err != nil {
			return err
		}
		c.sweepEvery = d
		return nil
	}
}

// WithoutSweep turns the background sweep off, for a deployment that
// deletes expired rows itself (a cron job running Sweep, or pg_cron), or
// a short-lived tool such as a migration.
func WithoutSweep() Option {
	return func(c *config) error {
		c.sweepOff = true
		return nil
	}
}

// WithClosePool makes Close close the pool too. Without it the caller keeps
// ownership of the pool, which is what you want when it serves other parts
// of the program.
func WithClosePool() Option {
	return func(c *config) error {
		c.closePool = true
		return nil
	}
}

var errNilPool = errors.New("pgstore: New(ctx, nil): pass a *pgxpool.Pool, such as the one pgxpool.New returns")

// New returns a Store over the table of the database pool connects to,
// creating the table and its index if absent (unless WithoutCreate), and
// starts the background sweep. It fails when the database cannot be
// reached within ctx, when an option is invalid, or when the table cannot
// be created (the error names the statements an operator can run). The
// store does not own pool: Close leaves it open unless WithClosePool.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	if pool == nil {
		return nil, errNilPool
	}
	cfg := config{table: DefaultTable, create: true, maxValue: DefaultMaxValueSize, sweepEvery: DefaultSweepInterval}
	if err := storeopt.Apply(&cfg, opts); err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{pool: pool, config: cfg, channel: cfg.table + "_changes"}
	s.q = newQueries(cfg.table, s.channel)
	if err := s.ensureTable(ctx); err != nil {
		return nil, err
	}
	if !cfg.sweepOff {
		sctx, cancel := context.WithCancel(context.Background())
		s.sweepStop, s.sweepDone = cancel, make(chan struct{})
		go s.sweepLoop(sctx)
	}
	return s, nil
}

// Schema returns the statements that create the store's table and index,
// for an operator who creates them beforehand (see WithoutCreate).
func (s *Store) Schema() string { return schema(s.table, s.unlogged) }

func schema(table string, unlogged bool) string {
	kind := "TABLE"
	if unlogged {
		kind = "UNLOGGED TABLE"
	}
	t := pgx.Identifier{table}.Sanitize()
	return fmt.Sprintf(`CREATE %s IF NOT EXISTS %s (
    key        text COLLATE "C" PRIMARY KEY,
    value      bytea  NOT NULL,
    version    bigint NOT NULL,
    expires_at timestamptz
);
CREATE INDEX IF NOT EXISTS %s ON %s (expires_at) WHERE expires_at IS NOT NULL;`,
		kind, t, pgx.Identifier{table + "_expires_at"}.Sanitize(), t)
}

// ensureTable creates the table when it is absent, and reads whether it is
// unlogged. It looks first, so that a role without CREATE on the schema
// can use a table an operator made.
func (s *Store) ensureTable(ctx context.Context) error {
	var persistence *string
	err := s.pool.QueryRow(ctx, `SELECT c.relpersistence::text FROM pg_class c WHERE c.oid = to_regclass($1)`, pgx.Identifier{s.table}.Sanitize()).Scan(&persistence)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return s.wrap(ctx, "new", err)
	}
	if err == nil && persistence != nil {
		s.unlogged = *persistence == "u"
		return nil
	}
	if !s.create {
		return fmt.Errorf("pgstore: new: table %q does not exist and WithoutCreate forbids creating it; have an operator run:\n%s", s.table, s.Schema())
	}
	if _, err := s.pool.Exec(ctx, s.Schema()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return fmt.Errorf("pgstore: new: the role may not create table %q (%s); have an operator run:\n%s\nor grant the role CREATE on the schema", s.table, pgErr.Message, s.Schema())
		}
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return nil // another instance created it at the same moment
		}
		return s.wrap(ctx, "new: create table", err)
	}
	return nil
}

// Table returns the name of the store's table.
func (s *Store) Table() string { return s.table }

// MaxValueSize reports the largest value Save accepts.
func (s *Store) MaxValueSize() int { return s.maxValue }

// start checks that a call may proceed.
func (s *Store) start(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("pgstore: %s: %w", op, driver.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pgstore: %s: %w", op, err)
	}
	return nil
}

// Load implements driver.Store with one SELECT of a live row. A row
// holding version 0, which no writer hands out, fails with an error
// wrapping driver.ErrCorrupt.
func (s *Store) Load(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := s.start(ctx, "load"); err != nil {
		return nil, driver.NoVersion, err
	}
	var (
		value []byte
		v     int64
	)
	if err := s.pool.QueryRow(ctx, s.q.load, key).Scan(&value, &v); err != nil {
		return nil, driver.NoVersion, s.wrap(ctx, "load", err)
	}
	if v == 0 {
		return nil, driver.NoVersion, fmt.Errorf("pgstore: load: the row holds version 0, which no writer hands out: %w", driver.ErrCorrupt)
	}
	return value, driver.Version(uint64(v)), nil
}

// Version implements driver.Versioner: it reads the version column of a
// live row alone, so that an L1 revalidates without moving the value.
func (s *Store) Version(ctx context.Context, key string) (driver.Version, error) {
	if err := s.start(ctx, "version"); err != nil {
		return driver.NoVersion, err
	}
	var v int64
	if err := s.pool.QueryRow(ctx, s.q.version, key).Scan(&v); err != nil {
		return driver.NoVersion, s.wrap(ctx, "version", err)
	}
	if v == 0 {
		return driver.NoVersion, fmt.Errorf("pgstore: version: the row holds version 0: %w", driver.ErrCorrupt)
	}
	return driver.Version(uint64(v)), nil
}

// Save implements driver.Store with one statement that writes the row if
// its version is ifVersion and notifies the watchers in the same
// transaction (see the package documentation).
func (s *Store) Save(ctx context.Context, key string, value []byte, ifVersion driver.Version, ttl time.Duration) (driver.Version, error) {
	if err := s.start(ctx, "save"); err != nil {
		return driver.NoVersion, err
	}
	if len(value) > s.maxValue {
		return driver.NoVersion, fmt.Errorf("pgstore: save: %d bytes, limit %d: %w", len(value), s.maxValue, driver.ErrTooLarge)
	}
	if value == nil {
		value = []byte{} // NOT NULL
	}
	v := netstore.NewVersion()
	msg := changeMessage(key, v)
	ttlArg := ttlMicros(ttl)
	var (
		tag pgconn.CommandTag
		err error
	)
	if ifVersion == driver.NoVersion {
		tag, err = s.pool.Exec(ctx, s.q.insert, key, value, int64(v), ttlArg, msg)
	} else {
		tag, err = s.pool.Exec(ctx, s.q.update, key, value, int64(v), ttlArg, msg, int64(uint64(ifVersion)))
	}
	if err != nil {
		return driver.NoVersion, s.wrap(ctx, "save", err)
	}
	if tag.RowsAffected() == 0 {
		return driver.NoVersion, fmt.Errorf("pgstore: save: %w", driver.ErrConflict)
	}
	return v, nil
}

// Delete implements driver.Store: one statement deletes the row and
// notifies the watchers, even when the row was already gone (an Adapter's
// L1 may still hold a key that expired, and a sign-out must reach it).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.start(ctx, "delete"); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, s.q.delete, key, changeMessage(key, driver.NoVersion)); err != nil {
		return s.wrap(ctx, "delete", err)
	}
	return nil
}

// Ping implements driver.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.start(ctx, "ping"); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.wrap(ctx, "ping", err)
	}
	return nil
}

// Close implements driver.Store: it stops the sweep and the watch, and
// closes the pool only when the store was built WithClosePool.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.sweepStop != nil {
		s.sweepStop()
		<-s.sweepDone
	}
	s.closeWatch()
	if s.closePool {
		s.pool.Close()
	}
	return nil
}

// BoundsContext implements driver.ContextBounder: pgx bounds every call
// by ctx itself.
func (s *Store) BoundsContext() bool { return true }

// SystemName implements driver.SystemNamer: "postgresql", the
// db.system.name of OpenTelemetry's semantic conventions.
func (s *Store) SystemName() string { return "postgresql" }

// Volatile implements driver.Volatile: an UNLOGGED table loses its rows
// in a crash or a failover.
func (s *Store) Volatile() bool { return s.unlogged }

// wrap turns a pgx error into one that callers can test with errors.Is.
// The message never names the key: pgx errors carry the statement's
// error, never its arguments.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	var kind error
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		kind = driver.ErrNotFound
	case pgconn.Timeout(err), netstore.IsTimeout(err):
		kind = context.DeadlineExceeded
	case errors.As(err, &pgErr) && pgErr.Code == "54000": // program_limit_exceeded
		kind = driver.ErrTooLarge
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return fmt.Errorf("pgstore: %s: the role lacks a privilege on table %q (grant SELECT, INSERT, UPDATE, DELETE): %w", op, s.table, err)
	case errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return fmt.Errorf("pgstore: %s: table %q is gone (it was dropped after New): %w", op, s.table, err)
	}
	if s.closed.Load() && kind == nil {
		kind = driver.ErrClosed
	}
	return netstore.Wrap(ctx, "pgstore: "+op, err, kind)
}

// ttlMicros renders ttl as whole microseconds, rounded up so that a
// positive ttl still expires, or nil (SQL NULL: no expiry).
func ttlMicros(ttl time.Duration) *int64 {
	if ttl <= 0 {
		return nil
	}
	us := int64(ttl / time.Microsecond)
	if time.Duration(us)*time.Microsecond < ttl {
		us++
	}
	return &us
}

// The capabilities an Adapter and the operator tools look for.
var (
	_ driver.Watcher        = (*Store)(nil)
	_ driver.Versioner      = (*Store)(nil)
	_ driver.Lister         = (*Store)(nil)
	_ driver.Lifetimer      = (*Store)(nil)
	_ driver.Pinger         = (*Store)(nil)
	_ driver.SystemNamer    = (*Store)(nil)
	_ driver.ContextBounder = (*Store)(nil)
	_ driver.Volatile       = (*Store)(nil)
)
