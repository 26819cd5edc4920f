package protect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The ring record is JSON so that an operator can read it with redis-cli or
// bbolt's tools: ids, dates and KEK ids are in clear; key material only
// wrapped. Nothing in it is trusted until a KEK has authenticated it:
//
//   - each key's wrap binds, as associated data, its id, suite, dates and
//     KEK id, so an edited date makes the key fail to unwrap;
//   - each revocation is a wrap of the key id by a KEK, bound to the id, the
//     revocation time and the KEK id, so nobody without a KEK can revoke a
//     key (or forge a revocation list), and revocations merge one by one;
//   - the naming secret (format 2) is wrapped like a key, bound to a label
//     of its own and its KEK id, so it cannot be swapped with a data key;
//   - unknown fields and other format versions are refused, so an older
//     server never rewrites (and silently truncates) a newer record. Any
//     new field therefore comes with a new format number.
//
// Format 1 (the first release) has no naming secret; format 2 must have
// one. Format 3 adds to each key the kind of its KEK ("aes",
// "certificate", "azure-keyvault", ...), so an operator moving between
// kinds of KEK sees which keys have moved; a key verifies only if its
// kind is that of the ring's KEK of its id. All three decode; a ring adds
// the secret to a format 1 record when it opens it, and fills in the
// kinds at its next write (no KEK call), which makes the record format 3.
//
// Times are Unix seconds.
type recordJSON struct {
	V       int              `json:"v"`
	Keys    []keyJSON        `json:"keys"`
	Revoked []revocationJSON `json:"revoked,omitempty"`
	Naming  *namingJSON      `json:"naming,omitempty"`
}

// namingJSON is the wrapped secret of HashKey.
type namingJSON struct {
	KEK     string `json:"kek"`
	Wrapped []byte `json:"wrapped"`
}

type keyJSON struct {
	ID         string `json:"id"`
	Suite      int    `json:"suite"`
	Created    int64  `json:"created"`
	Activation int64  `json:"activation"`
	Expiration int64  `json:"expiration"`
	KEK        string `json:"kek"`
	Kind       string `json:"kind,omitempty"` // format 3
	Wrapped    []byte `json:"wrapped"`
}

type revocationJSON struct {
	ID  string `json:"id"`
	At  int64  `json:"at"`
	KEK string `json:"kek"`
	Tag []byte `json:"tag"`
}

const (
	// recordFormat is the format this package writes; recordFormatV1
	// records (no naming secret) and recordFormatV2 records (no KEK
	// kinds) still decode.
	recordFormat   = 3
	recordFormatV2 = 2
	recordFormatV1 = 1
	// namingSecretLen is the size of HashKey's secret: as long as
	// HMAC-SHA256's output, the least RFC 2104 recommends.
	namingSecretLen = 32
	maxRecordSize   = 4 << 20
	maxRecordKeys   = 10000
	maxWrapped      = 4096
	// Dates outside [minTime, maxTime] are refused so that time arithmetic
	// on them never overflows. 1 Jan 2000 to 1 Jan 3000.
	minTime = 946684800
	maxTime = 32503680000
)

// keyEntry is one key as the record stores it: not yet authenticated.
type keyEntry struct {
	id         keyID
	suite      byte
	created    int64
	activation int64
	expiration int64
	kekID      string
	kekKind    string // "" in a format 1 or 2 record
	wrapped    []byte
}

// revEntry is one revocation as the record stores it.
type revEntry struct {
	id    keyID
	at    int64
	kekID string
	tag   []byte
}

// namingEntry is the naming secret as the record stores it: wrapped, not
// yet authenticated.
type namingEntry struct {
	kekID   string
	wrapped []byte
}

type record struct {
	keys    []keyEntry
	revoked []revEntry
	naming  *namingEntry // nil in a format 1 record
}

func (a *namingEntry) equal(b *namingEntry) bool {
	return a.kekID == b.kekID && bytes.Equal(a.wrapped, b.wrapped)
}

// namingAAD is what the naming secret's wrap is bound to: a label no key
// or revocation uses (so a wrapped data key never unwraps as the naming
// secret, nor the reverse) and the KEK id.
func namingAAD(kekID string) []byte {
	const label = "msalcache/protect naming secret v1\x00"
	return append([]byte(label), kekID...)
}

func (a *keyEntry) equal(b *keyEntry) bool {
	return a.id == b.id && a.suite == b.suite && a.created == b.created &&
		a.activation == b.activation && a.expiration == b.expiration &&
		a.kekID == b.kekID && a.kekKind == b.kekKind && bytes.Equal(a.wrapped, b.wrapped)
}

func (a *revEntry) equal(b *revEntry) bool {
	return a.id == b.id && a.at == b.at && a.kekID == b.kekID && bytes.Equal(a.tag, b.tag)
}

// keyAAD is what a key's wrap is bound to: every field but the wrapped
// bytes and the KEK kind (format 3), which is authenticated instead by
// matching the kind of the ring's KEK of that id (see verify), so that
// recording kinds needs no KEK call. All parts but the last have fixed
// sizes, so the encoding is unambiguous.
func keyAAD(e *keyEntry) []byte {
	const label = "msalcache/protect key v1\x00"
	out := make([]byte, 0, len(label)+keyIDLen+1+3*8+len(e.kekID))
	out = append(out, label...)
	out = append(out, e.id[:]...)
	out = append(out, e.suite)
	out = binary.BigEndian.AppendUint64(out, uint64(e.created))
	out = binary.BigEndian.AppendUint64(out, uint64(e.activation))
	out = binary.BigEndian.AppendUint64(out, uint64(e.expiration))
	return append(out, e.kekID...)
}

// revAAD is what a revocation's tag is bound to.
func revAAD(e *revEntry) []byte {
	const label = "msalcache/protect revocation v1\x00"
	out := make([]byte, 0, len(label)+keyIDLen+8+len(e.kekID))
	out = append(out, label...)
	out = append(out, e.id[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(e.at))
	return append(out, e.kekID...)
}

// errNewerFormat reports a well-formed record of a format newer than this
// package writes. It is not damage: a running ring must leave it alone, or
// an older server would overwrite the ring of every newer one.
var errNewerFormat = errors.New("record format is newer than this package knows")

// decodeRecord parses a ring record strictly. It checks shape only; the
// caller authenticates every entry with its KEKs. A JSON object whose "v"
// is a format number above this package's fails with errNewerFormat, any
// other refusal is damage.
func decodeRecord(b []byte) (*record, error) {
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("record of %d bytes exceeds %d", len(b), maxRecordSize)
	}
	// Lenient on purpose: a newer format may add fields or change them.
	var probe struct {
		V int `json:"v"`
	}
	if json.Unmarshal(b, &probe) == nil && probe.V > recordFormat {
		return nil, fmt.Errorf("%w: format %d, this package writes %d (a server of a newer version wrote it; upgrade this one)", errNewerFormat, probe.V, recordFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rj recordJSON
	if err := dec.Decode(&rj); err != nil {
		return nil, fmt.Errorf("record is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("record has trailing data")
	}
	switch {
	case rj.V != recordFormat && rj.V != recordFormatV2 && rj.V != recordFormatV1:
		return nil, fmt.Errorf("record format %d is not %d, %d or %d", rj.V, recordFormatV1, recordFormatV2, recordFormat)
	case rj.V == recordFormatV1 && rj.Naming != nil:
		return nil, errors.New("record format 1 has no naming secret")
	case rj.V != recordFormatV1 && rj.Naming == nil:
		return nil, fmt.Errorf("record format %d lacks its naming secret", rj.V)
	}
	if len(rj.Keys) > maxRecordKeys || len(rj.Revoked) > maxRecordKeys {
		return nil, fmt.Errorf("record holds more than %d entries", maxRecordKeys)
	}
	rec := &record{keys: make([]keyEntry, 0, len(rj.Keys)), revoked: make([]revEntry, 0, len(rj.Revoked))}
	seen := make(map[keyID]bool, len(rj.Keys))
	for i, kj := range rj.Keys {
		id, err := parseKeyID(kj.ID)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("key %s appears twice", id)
		}
		seen[id] = true
		if kj.Suite != int(suiteAES256GCMHKDF) {
			return nil, fmt.Errorf("key %s: unknown suite %d", id, kj.Suite)
		}
		for _, t := range []int64{kj.Created, kj.Activation, kj.Expiration} {
			if t < minTime || t > maxTime {
				return nil, fmt.Errorf("key %s: date %d out of range", id, t)
			}
		}
		if kj.Expiration <= kj.Activation {
			return nil, fmt.Errorf("key %s: expires before it activates", id)
		}
		if err := validKEKID(kj.KEK); err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		if rj.V == recordFormat {
			if err := validKEKKind(kj.Kind); err != nil {
				return nil, fmt.Errorf("key %s: %w", id, err)
			}
		} else if kj.Kind != "" {
			return nil, fmt.Errorf("key %s: record format %d has no KEK kinds", id, rj.V)
		}
		if len(kj.Wrapped) == 0 || len(kj.Wrapped) > maxWrapped {
			return nil, fmt.Errorf("key %s: wrapped key of %d bytes", id, len(kj.Wrapped))
		}
		rec.keys = append(rec.keys, keyEntry{
			id: id, suite: byte(kj.Suite), created: kj.Created, activation: kj.Activation,
			expiration: kj.Expiration, kekID: kj.KEK, kekKind: kj.Kind, wrapped: kj.Wrapped,
		})
	}
	seenRev := make(map[keyID]bool, len(rj.Revoked))
	for i, rv := range rj.Revoked {
		id, err := parseKeyID(rv.ID)
		if err != nil {
			return nil, fmt.Errorf("revocation %d: %w", i, err)
		}
		if seenRev[id] {
			return nil, fmt.Errorf("revocation of %s appears twice", id)
		}
		seenRev[id] = true
		if rv.At < minTime || rv.At > maxTime {
			return nil, fmt.Errorf("revocation of %s: date %d out of range", id, rv.At)
		}
		if err := validKEKID(rv.KEK); err != nil {
			return nil, fmt.Errorf("revocation of %s: %w", id, err)
		}
		if len(rv.Tag) == 0 || len(rv.Tag) > maxWrapped {
			return nil, fmt.Errorf("revocation of %s: tag of %d bytes", id, len(rv.Tag))
		}
		rec.revoked = append(rec.revoked, revEntry{id: id, at: rv.At, kekID: rv.KEK, tag: rv.Tag})
	}
	if n := rj.Naming; n != nil {
		if err := validKEKID(n.KEK); err != nil {
			return nil, fmt.Errorf("naming secret: %w", err)
		}
		if len(n.Wrapped) == 0 || len(n.Wrapped) > maxWrapped {
			return nil, fmt.Errorf("naming secret: wrapped secret of %d bytes", len(n.Wrapped))
		}
		rec.naming = &namingEntry{kekID: n.KEK, wrapped: n.Wrapped}
	}
	return rec, nil
}

// encodeRecord writes rec in a canonical order (keys by activation then id,
// revocations by id), so that two servers holding the same ring write the
// same bytes. A record with a naming secret is format 3 when every key
// records its KEK's kind, and 2 otherwise; one without a naming secret
// (only a decoded format 1 record, never a ring's write) stays format 1.
func encodeRecord(rec *record) ([]byte, error) {
	keys := slices.Clone(rec.keys)
	slices.SortFunc(keys, func(a, b keyEntry) int {
		if a.activation != b.activation {
			if a.activation < b.activation {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	revs := slices.Clone(rec.revoked)
	slices.SortFunc(revs, func(a, b revEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	rj := recordJSON{V: recordFormatV1, Keys: make([]keyJSON, 0, len(keys))}
	if n := rec.naming; n != nil {
		rj.V = recordFormat
		rj.Naming = &namingJSON{KEK: n.kekID, Wrapped: n.wrapped}
		kinds := 0
		for _, k := range keys {
			if k.kekKind != "" {
				kinds++
			}
		}
		switch kinds {
		case len(keys):
		case 0:
			rj.V = recordFormatV2
		default:
			// Dropping the kinds would break the wraps they are bound
			// into; rewrap gives every key one before a write.
			return nil, errors.New("record mixes keys with and without KEK kinds")
		}
	}
	for _, k := range keys {
		kj := keyJSON{
			ID: k.id.String(), Suite: int(k.suite), Created: k.created, Activation: k.activation,
			Expiration: k.expiration, KEK: k.kekID, Wrapped: k.wrapped,
		}
		if rj.V == recordFormat {
			kj.Kind = k.kekKind
		}
		rj.Keys = append(rj.Keys, kj)
	}
	for _, rv := range revs {
		rj.Revoked = append(rj.Revoked, revocationJSON{ID: rv.id.String(), At: rv.at, KEK: rv.kekID, Tag: rv.tag})
	}
	return json.Marshal(rj)
}
