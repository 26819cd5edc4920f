// Package protect encrypts what msalcache stores, under AES-256 keys that a
// farm of servers shares and rotates on its own.
//
// A KeyRing is an driver.Protector. It keeps its keys in one record of
// an driver.Store (the same Redis or bbolt file as the token cache, or
// another), each key wrapped by a key-encryption key (KEK) that never
// leaves the servers. Every server loads the ring, seals with its current
// default key and opens blobs under any key of the ring, so every server
// reads what any other wrote, through rotations, with no operator action:
//
//	kek, err := protect.LoadKeyFile("/etc/myapp/msalcache.kek")
//	if err != nil {
//		return err
//	}
//	wrapper, err := protect.NewAESKeyWrapper("kek-2030-01", kek)
//	if err != nil {
//		return err
//	}
//	ring, err := protect.NewKeyRing(ctx, store, wrapper)
//	if err != nil {
//		return err
//	}
//	defer ring.Close()
//	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
//
// # What it protects against
//
// With every blob sealed, these reveal no token:
//   - a dump of Redis, a copy of the bbolt file, a backup of either;
//   - a leaked store password (read access to the store);
//   - a blob moved to another user's key, another namespace or another
//     application: the Adapter passes the store key as associated data and
//     the ring adds its purpose (WithPurpose), so the blob fails to open
//     (a decryption error) instead of serving one user's tokens to another.
//
// It does not protect against:
//   - replay: whoever can write to the store can put back an older blob
//     that was valid for the same store key, rolling a user's cache back
//     (to tokens that were valid then; Entra ID still checks them);
//   - a compromised application server, or a leaked KEK: either holds what
//     opens everything;
//   - traffic analysis: the size of a blob (plaintext + 65 bytes) and the
//     times of writes are visible;
//   - deletion: whoever can write to the store can delete blobs (a cache
//     miss) or the ring's record (see below).
//
// # Key setup
//
// The KEK is 32 random bytes. Keep it out of the store, in a file readable
// by the application's account only, or in an environment variable:
//
//	openssl rand -base64 32 > /etc/myapp/msalcache.kek && chmod 600 /etc/myapp/msalcache.kek
//	export MSALCACHE_KEK=$(openssl rand -base64 32)
//
// LoadKeyFile refuses a file that group or others can read (and says to
// chmod 600 it); KeyFromEnv reads the variable; GenerateKeyFile writes a
// new key file with mode 0600. Every server of a farm needs the same KEK
// under the same id.
//
// The KEK may instead be an X.509 certificate whose private key stays
// where the operators keep it (a 0600 PEM file, an HSM, a TPM, a PKCS#11
// token): LoadCertificateKeyWrapper, or NewCertificateKeyWrapper with any
// crypto.Decrypter. Its id is the certificate's SHA-256 thumbprint, so a
// renewed certificate is a new KEK (see KEK rotation). Or it is a key in
// Azure Key Vault or Managed HSM: package azkeyvault, a module of its own.
// Any other KMS fits KeyWrapper; it reports an outage with
// ErrKEKUnavailable, so that the ring fails the call instead of taking the
// record for damaged.
//
// The ring unwraps each data key once, when it starts or first meets the
// key, and holds it in memory: a KEK is called at start (once per key,
// plus the naming secret and revocations), when a key is minted (once a
// month by one server) and when keys move to another KEK, never per token,
// so a vault that is unreachable after start-up costs nothing until the
// next rotation. KEKStats counts the calls; CheckKEKs has every KEK prove
// it still works. A newcomer whose KEK is unavailable fails at its first
// call with an error wrapping ErrKEKUnavailable.
//
// # Payload
//
// A sealed blob is
//
//	FF 50 52 01 | suite 01 | key id (16) | salt (16) | nonce (12) | AES-256-GCM ciphertext | tag (16)
//
// 65 bytes more than the plaintext. Each message is sealed under its own
// AES key, HKDF-SHA256(master key, salt, "msalcache protect v1" ‖ key id),
// so no key approaches GCM's limit of 2^32 random nonces however many
// messages a ring seals. The associated data is the header, the purpose
// and the caller's aad (both length-prefixed): no bit of a blob, and no
// part of its context, can change without Unprotect failing with "protect: decryption
// failed", which says nothing more on purpose. Input that is not a payload,
// and a key id the ring does not hold even after a reload, fail with errors
// that say so; a revoked key is ErrKeyRevoked. Unprotect never panics, whatever the input.
//
// # Rotation
//
// The timing follows ASP.NET Core Data Protection. A key encrypts for 30
// days (WithKeyLifetime). A day before the default key expires
// (WithActivationDelay, plus one refresh interval), the first server to
// notice writes its successor, to activate when the default expires, so
// every server has loaded it long before anyone encrypts with it. Servers
// reload the ring every 10 minutes (WithRefreshInterval, less up to 20%
// jitter), so a key written by any server is used everywhere within one
// interval; a blob under a key a server has not loaded yet makes it reload
// at once (shared by concurrent callers, at most once per 10 seconds,
// WithReloadInterval). Where the store pushes changes, servers also
// reload as soon as the record changes (see Changes pushed by the store).
//
// The default key is, as in ASP.NET Core's resolver, the key with the
// latest activation among those activated (activation at most now plus
// the clock-skew allowance, 5 minutes, WithClockSkew), neither expired nor
// revoked; ties go to the smaller id. Servers holding the same ring
// therefore agree. When no key qualifies (an empty store, a revoked
// default) a server mints one, active at once (backdated by the skew so
// that servers whose clocks run behind agree), and writes it with
// compare-and-set: exactly one server of a farm starting together wins,
// and the others load and adopt the winner's key. No key is ever used
// before it is in the store.
//
// Expired keys keep decrypting, so blobs written under them stay readable;
// NeedsReprotect tells the Adapter to seal them again under the default
// key on its next write, so old keys drain out of the store. Keys are
// never pruned from the record (a ring grows by about twelve small
// entries a year); Revoke the ones you want gone.
//
// Rotate makes a new key the default at once, for an emergency; Revoke
// stops a key from decrypting, on this server at once and on the others
// as soon as they hear of it (below), else at their next refresh.
// Revoking the default key mints a new default in the same write. A
// revoked key never decrypts again, and no server seals under it once it
// has loaded the revocation: the reload that brings it swaps the ring's
// state in one step, and from then on Protect picks another key (minting
// one, with the store's help, if none is left).
//
// # Changes pushed by the store
//
// When the ring's store implements driver.Watcher (redisstore,
// boltstore, memstore) and the background refresh is on (the default; see
// WithAutoRefresh), each ring subscribes to the store's changes and
// reloads its record as soon as another server writes it: a Rotate or a
// Revoke on one server reaches the others within about a second, usually
// within milliseconds (measured on loopback Redis, memstore and bbolt with
// a one-hour refresh interval, on a loaded 2-core machine: at most 7 ms
// from Revoke returning on one ring to the other ring sealing under
// another key). The reload only adopts
// what the record holds, like the reload for an unknown key id; it mints
// nothing and writes only to rewrite a damaged record. A ring skips the
// notification of its own write, and notifications that arrive during a
// reload make one more. A reload that fails is retried, from 250 ms
// doubling up to 30 s, until one succeeds.
//
// While the watch is down (Redis reports a dropped or stalled subscription,
// or a failover, within about 2 s; a closed store), changes go unheard and
// the refresh interval is the bound again, as on a store that cannot push
// (memcached is refused anyway; a redisstore on a *redis.Ring cannot be
// watched): a change then reaches a server within one refresh interval.
// When the watch comes back up the ring reloads once, since it cannot know
// what it missed. The periodic refresh runs either way: it is what applies
// the rotation schedule. A ring built WithAutoRefresh(false) does no
// background work and does not watch.
//
// # The record, and what happens when it is lost or replayed
//
// The ring is one JSON record under "msalcache/keyring/v1" (WithRingKey), written
// only with compare-and-set. Ids, dates and KEK ids are readable; the
// naming secret (see Partition names) is wrapped like the keys; each
// key's material is wrapped by the KEK with its id, dates and KEK id as
// associated data, and each revocation is signed the same way, so an edit
// of any date, a swapped key or a forged revocation makes the record fail
// to authenticate. A record with a key wrapped by a KEK the server lacks
// is refused (ErrInvalidRing) and never overwritten: it may come from a
// server further into a KEK rotation.
//
// Keep the ring in a durable store: a store that may evict
// (driver.IsVolatile, memcached) is refused with ErrVolatileStore.
//
// A server never forgets a key or a revocation it has loaded. When it finds
// the record lacks one (the record was deleted, replayed from an older
// copy, or written by a newcomer after a flush) it writes the union back
// at its next refresh. So:
//
//   - Read errors: a server that cannot read the store at start-up fails
//     and mints nothing; a running server keeps its keys.
//   - Record damaged (a flipped bit on disk, a torn write, an edit: bytes
//     that do not decode, an entry that fails to authenticate, or a store
//     Load that reports driver.ErrCorrupt): a newcomer fails with
//     ErrRingDamaged and writes nothing, since it cannot tell which keys
//     the record held. A running server keeps its keys and, at its next
//     refresh or reload, rewrites the record from its verified copy (plus
//     any entry of the damaged record that still authenticates) with
//     compare-and-set, logging it at ERROR. Left alone, the ring could
//     never add a key again and would run out of keys 30 days later. If
//     no server runs, reset the ring: delete the record and its marker
//     (below); every stored token then reads as a miss and is fetched
//     again. Two kinds of unreadable record are not treated as damage and
//     never overwritten: one whose format number is newer than this
//     version's (a newer server wrote it; a flipped bit in that one digit
//     looks the same, and is left to an operator), and one that shares no
//     entry with the server's copy and authenticates under none of its
//     KEKs (another ring under the same KEK id: two misconfigured servers
//     must not overwrite each other forever).
//   - Record deleted while servers run: they keep encrypting and
//     decrypting with the keys they hold and mint nothing for it. A
//     newcomer fails closed with ErrRingMissing, because a marker record
//     (the ring key + ".created", written after the first ring) shows that
//     a ring existed. The first running server to refresh writes its copy
//     back, keys unchanged, and newcomers start again. If no server runs,
//     restore the record from a backup, or delete the marker to start a new
//     ring (blobs under the lost keys are then fetched again).
//   - Store flushed (ring and marker gone): a newcomer cannot tell this
//     from a new deployment, and starts a new ring. Running servers merge
//     their keys into it at their next refresh, after which every server
//     reads every blob again.
//   - Old record replayed over a newer one (by someone with write access
//     to the store, who cannot forge entries without the KEK): a server
//     that had seen a revocation keeps the key revoked, never uses it, and
//     restores the revocation and any missing keys at its next refresh.
//     What cannot be guaranteed: a newcomer that starts between the replay
//     and that refresh has no memory to compare with, and trusts the
//     replayed record; it may decrypt, or even seal under, a key revoked
//     after that copy was taken, until it refreshes after some running
//     server restored the record (two refresh intervals at most while
//     any server that saw the revocation runs). If a key was revoked
//     because it leaked, also rotate the KEK (below): records replayed
//     from before the KEK rotation then fail to authenticate once the old
//     KEK is removed.
//
// # Partition names
//
// A KeyRing is also an driver.KeyHasher: the Adapter names each
// partition in the store with HashKey, HMAC-SHA256 of the partition key
// under a naming secret, instead of a plain SHA-256. A partition key is a
// user's object and tenant ids, which are not secret (they appear in
// tokens, logs, directory listings). With unkeyed names, whoever can read
// the store could hash the ids of a person of interest and learn whether
// that user has tokens cached, and when they were last written; with
// keyed names the store's keys reveal nothing without the secret. (It does
// not hide how many partitions there are, their sizes or write times.)
//
// The secret is 32 random bytes in the ring's record, wrapped by the KEK
// like the data keys, under associated data of its own so it cannot be
// swapped with one. It is created with the ring and survives every
// rotation, revocation and KEK rotation; only a reset of the ring (or a
// flushed store, where a newcomer starts a new ring and running servers
// adopt its secret) changes it, and then every partition is a miss once.
// A record of the first release (format 1) has no secret: the first ring
// of this version to open it adds one with compare-and-set (servers
// racing to do so adopt the winner's), and a running server that finds a
// record rolled back to one without the secret writes its secret back.
// HashKey itself never touches the store, never blocks and never fails.
//
// Upgrading: the names change from plain SHA-256 to keyed, so after the
// upgrade every partition is a cache miss once; each is acquired again
// from Entra ID on its next silent call and then shared as before. The old
// entries expire with their TTL. During a rolling upgrade, old and new
// servers name partitions differently and simply do not share tokens with
// each other. The record becomes format 2, which the previous release
// cannot read: its running servers keep their keys (and log refresh
// failures), but one of them restarting fails with ErrInvalidRing. So
// finish the rollout rather than restart old servers; to roll back, an
// operator can turn the record back into format 1 by setting "v" to 1 and
// removing "naming" (the keys' wraps do not cover either), at the cost of
// a new secret, and one more miss per partition, at the next upgrade.
//
// Format 3 adds each key's KEK kind ("kind"). This version reads formats
// 1 to 3 and writes format 3 at the ring's next write (a new key, Rotate,
// Revoke), without calling the KEK; loading a record does not rewrite it.
// A server of an earlier version then refuses the record at its next
// start (ErrInvalidRing; running ones keep their keys), so finish the
// rollout before the next key is due (30 days by default) or before
// calling Rotate. To roll back, remove every "kind" and set "v" to 2.
//
// # KEK rotation
//
// NewKeyRing's kek is the primary: it wraps new keys, and every write of
// the record rewraps all keys under it. WithKEKs adds KEKs that only
// unwrap, of any kind, so moving from an environment key to a certificate
// or to Key Vault, or to a renewed certificate, is one procedure: deploy
// the new KEK on every server as an extra KEK; then make it the primary
// with the old one extra; call Rotate (or wait for the next scheduled key,
// written a day before the default expires: the record is rewritten, and
// so rewrapped, only when it changes) so the record is rewritten under the
// new KEK, which KeyInfo.KEKID and KeyInfo.KEKKind show; then remove the
// old KEK. A Key Vault key rotated in the vault is no new KEK: package
// azkeyvault records the key version in each wrapping.
package protect
