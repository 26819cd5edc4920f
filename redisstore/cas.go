package redisstore

import (
	"context"
	"encoding/binary"
	"strings"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/redis/go-redis/v9"
)

// Replies of casScript.
const (
	casConflict = 0 // the key's version is not the expected one: nothing written
	casWritten  = 1 // the record was written
	casAlready  = 2 // the key already holds this very record's version: an earlier attempt of the same Save landed
)

// casScript writes a record if the key's current version is the expected one.
//
//	KEYS[1]  the key
//	ARGV[1]  expected version, 8 bytes big-endian; empty: the key must be absent
//	ARGV[2]  the new record: new version (8 bytes) followed by the value
//	ARGV[3]  ttl in milliseconds; "0": no expiry
//	ARGV[4]  the channel changes are published on (see Store.Watch)
//	ARGV[5]  the message announcing this write (changeMessage)
//
// GETRANGE reads only the version, not the whole old value, and answers ""
// for an absent key. Whatever does not hold a version (shorter than 8
// bytes, version 0, or a key of another type, on which GETRANGE fails with
// WRONGTYPE) is what Load reports as corrupt, and it counts as absent here
// too, so that NoVersion replaces it: otherwise a damaged value would wedge
// its key until someone deleted it. The new version is random per Save (see
// newVersion), so finding it already in place can only mean that this
// Save's own earlier attempt was applied and its reply lost; answering
// success then makes go-redis's retry of a timed-out command harmless, also
// for a retry of the write that replaced a corrupt value. Comparing the new
// version before the expected one matters: after the first attempt, the
// expected version is gone. The script touches KEYS[1] only, so it runs on
// Cluster.
//
// A write is published from the script itself, in the same atomic step:
// no watcher can miss a write that happened, and none hears of one that
// did not (subscribers read the message only after the script ended). The
// retry that finds its own write in place publishes nothing: the first
// attempt did. PUBLISH inside a script is classic pub/sub, which Redis
// Cluster broadcasts to every node, and which replicas relay to their own
// subscribers. It runs before the SET, through pcall, so that a user whose
// ACL forbids the channel gets an error and writes nothing (Redis does
// not roll back a script that fails halfway): a write the watchers were
// not told of would leave their L1s stale.
var casScript = redis.NewScript(`
local cur = redis.pcall('GETRANGE', KEYS[1], 0, 7)
if type(cur) == 'table' then
  if not string.find(tostring(cur.err), 'WRONGTYPE', 1, true) then return cur end
  cur = ''
elseif #cur < 8 or cur == string.rep('\0', 8) then
  cur = ''
end
if cur == string.sub(ARGV[2], 1, 8) then return 2 end
if cur ~= ARGV[1] then return 0 end
local p = redis.pcall('PUBLISH', ARGV[4], ARGV[5])
if type(p) == 'table' then return p end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`)

// deleteScript deletes a key and publishes that it did, atomically, so
// that a watcher cannot miss a Delete (see Store.Watch). It publishes even
// when the key was already absent: a key that expired may still be held
// in an Adapter's L1, and the Delete of a sign-out must reach it. As in
// casScript, a PUBLISH the ACL refuses fails the call before the DEL.
//
//	KEYS[1]  the key
//	ARGV[1]  the channel changes are published on
//	ARGV[2]  the message announcing the delete (changeMessage with NoVersion)
var deleteScript = redis.NewScript(`
local p = redis.pcall('PUBLISH', ARGV[1], ARGV[2])
if type(p) == 'table' then return p end
redis.call('DEL', KEYS[1])
return 1
`)

// cas runs casScript for the full redis key k (the store's prefix and
// its key) and the encoded record rec (whose first 8 bytes are its new
// version), and returns the script's reply.
func (s *Store) cas(ctx context.Context, k string, ifVersion driver.Version, rec []byte, ttl time.Duration) (int64, error) {
	return casScript.Run(ctx, s.c, []string{k}, s.casArgs(k, ifVersion, rec, ttl)...).Int64()
}

// casArgs is ARGV of casScript for the full redis key k.
func (s *Store) casArgs(k string, ifVersion driver.Version, rec []byte, ttl time.Duration) []any {
	var expect []byte
	if ifVersion != driver.NoVersion {
		expect = binary.BigEndian.AppendUint64(make([]byte, 0, headerSize), uint64(ifVersion))
	}
	msg := changeMessage(strings.TrimPrefix(k, s.prefix), driver.Version(binary.BigEndian.Uint64(rec)))
	return []any{expect, rec, ttlArg(ttl), s.channel, msg}
}

// del runs deleteScript for the full redis key k.
func (s *Store) del(ctx context.Context, k string) error {
	msg := changeMessage(strings.TrimPrefix(k, s.prefix), driver.NoVersion)
	return deleteScript.Run(ctx, s.c, []string{k}, s.channel, msg).Err()
}
