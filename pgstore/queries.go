package pgstore

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/msalcache/msalcache"
)

// queries are the store's statements for one table. pgx prepares and
// caches each on every connection of the pool (its default statement
// cache), so they are parsed once per connection.
type queries struct {
	load, version, lifetime string
	insert, update, delete  string
	list, sweep             string
}

// live is the condition that a row has not expired.
const live = `(expires_at IS NULL OR expires_at > now())`

// expiry computes expires_at from $4, the TTL in microseconds (NULL: none).
const expiry = `now() + $4::bigint * interval '1 microsecond'`

func newQueries(table, channel string) queries {
	t := pgx.Identifier{table}.Sanitize()
	ch := quoteLiteral(channel)
	return queries{
		load:     `SELECT value, version FROM ` + t + ` WHERE key = $1 AND ` + live,
		version:  `SELECT version FROM ` + t + ` WHERE key = $1 AND ` + live,
		lifetime: `SELECT CASE WHEN expires_at IS NULL THEN -1 ELSE greatest(1, ceil(extract(epoch FROM expires_at - now()) * 1000000))::bigint END FROM ` + t + ` WHERE key = $1 AND ` + live,
		// The first write of a key, or the write over an expired row or a
		// row no writer made (version 0): one statement. pg_notify runs
		// only for the row written, and commits with it.
		insert: fmt.Sprintf(`WITH w AS (
  INSERT INTO %[1]s AS t (key, value, version, expires_at) VALUES ($1, $2, $3, %[2]s)
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
  WHERE t.version = 0 OR (t.expires_at IS NOT NULL AND t.expires_at <= now())
  RETURNING 1)
SELECT pg_notify(%[3]s, $5) FROM w`, t, expiry, ch),
		update: fmt.Sprintf(`WITH w AS (
  UPDATE %[1]s SET value = $2, version = $3, expires_at = %[2]s
  WHERE key = $1 AND version = $6 AND %[4]s
  RETURNING 1)
SELECT pg_notify(%[3]s, $5) FROM w`, t, expiry, ch, live),
		// The DELETE runs whether or not the SELECT reads its result (a
		// data-modifying WITH always runs to completion), and the notice
		// goes out even for an absent row.
		delete: fmt.Sprintf(`WITH d AS (DELETE FROM %[1]s WHERE key = $1)
SELECT pg_notify(%[2]s, $2)`, t, ch),
		list: `SELECT key FROM ` + t + ` WHERE key >= $1 AND key > $2 AND starts_with(key, $1) AND ` + live + ` ORDER BY key LIMIT ` + strconv.Itoa(listBatch),
		sweep: fmt.Sprintf(`DELETE FROM %[1]s WHERE key IN (
  SELECT key FROM %[1]s WHERE expires_at IS NOT NULL AND expires_at <= now()
  LIMIT %[2]d FOR UPDATE SKIP LOCKED)`, t, SweepBatch),
	}
}

// quoteLiteral quotes s as an SQL string literal. The store only quotes
// names it checked (WithTable), but quotes them properly all the same.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// changeMessage is what Save and Delete notify for key at version v
// (NoVersion for a delete): the key, a space, the version in hexadecimal.
func changeMessage(key string, v driver.Version) string {
	b := make([]byte, 0, len(key)+1+16)
	b = append(b, key...)
	b = append(b, ' ')
	return string(strconv.AppendUint(b, uint64(v), 16))
}

// parseChange reads a changeMessage.
func parseChange(msg string) (driver.Change, bool) {
	i := strings.LastIndexByte(msg, ' ')
	if i <= 0 || i == len(msg)-1 || len(msg)-i-1 > 16 {
		return driver.Change{}, false
	}
	v, err := strconv.ParseUint(msg[i+1:], 16, 64)
	if err != nil {
		return driver.Change{}, false
	}
	return driver.Change{Kind: driver.ChangeKey, Key: msg[:i], Version: driver.Version(v)}, true
}
