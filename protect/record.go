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
//   - unknown fields and other format versions are refused, so an older
//     server never rewrites (and silently truncates) a newer record.
//
// Times are Unix seconds.
type recordJSON struct {
	V       int              `json:"v"`
	Keys    []keyJSON        `json:"keys"`
	Revoked []revocationJSON `json:"revoked,omitempty"`
}

type keyJSON struct {
	ID         string `json:"id"`
	Suite      int    `json:"suite"`
	Created    int64  `json:"created"`
	Activation int64  `json:"activation"`
	Expiration int64  `json:"expiration"`
	KEK        string `json:"kek"`
	Wrapped    []byte `json:"wrapped"`
}

type revocationJSON struct {
	ID  string `json:"id"`
	At  int64  `json:"at"`
	KEK string `json:"kek"`
	Tag []byte `json:"tag"`
}

const (
	recordFormat  = 1
	maxRecordSize = 4 << 20
	maxRecordKeys = 10000
	maxWrapped    = 4096
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
	wrapped    []byte
}

// revEntry is one revocation as the record stores it.
type revEntry struct {
	id    keyID
	at    int64
	kekID string
	tag   []byte
}

type record struct {
	keys    []keyEntry
	revoked []revEntry
}

func (a *keyEntry) equal(b *keyEntry) bool {
	return a.id == b.id && a.suite == b.suite && a.created == b.created &&
		a.activation == b.activation && a.expiration == b.expiration &&
		a.kekID == b.kekID && bytes.Equal(a.wrapped, b.wrapped)
}

func (a *revEntry) equal(b *revEntry) bool {
	return a.id == b.id && a.at == b.at && a.kekID == b.kekID && bytes.Equal(a.tag, b.tag)
}

// keyAAD is what a key's wrap is bound to: every field but the wrapped
// bytes. All parts but the last have fixed sizes, so the encoding is
// unambiguous.
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
	if rj.V != recordFormat {
		return nil, fmt.Errorf("record format %d is not %d (written by another version of this package?)", rj.V, recordFormat)
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
		if len(kj.Wrapped) == 0 || len(kj.Wrapped) > maxWrapped {
			return nil, fmt.Errorf("key %s: wrapped key of %d bytes", id, len(kj.Wrapped))
		}
		rec.keys = append(rec.keys, keyEntry{
			id: id, suite: byte(kj.Suite), created: kj.Created, activation: kj.Activation,
			expiration: kj.Expiration, kekID: kj.KEK, wrapped: kj.Wrapped,
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
	return rec, nil
}

// encodeRecord writes rec in a canonical order (keys by activation then id,
// revocations by id), so that two servers holding the same ring write the
// same bytes.
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
	rj := recordJSON{V: recordFormat, Keys: make([]keyJSON, 0, len(keys))}
	for _, k := range keys {
		rj.Keys = append(rj.Keys, keyJSON{
			ID: k.id.String(), Suite: int(k.suite), Created: k.created, Activation: k.activation,
			Expiration: k.expiration, KEK: k.kekID, Wrapped: k.wrapped,
		})
	}
	for _, rv := range revs {
		rj.Revoked = append(rj.Revoked, revocationJSON{ID: rv.id.String(), At: rv.at, KEK: rv.kekID, Tag: rv.tag})
	}
	return json.Marshal(rj)
}
