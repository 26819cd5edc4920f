package protect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// classify decodes and verifies a record. It returns err for a record
// that must be left alone: one written by a newer format, or one whose
// entries are wrapped by a KEK this ring lacks or that shares nothing with
// this ring (another ring under the same KEK id). It returns damage, with
// the entries that did verify in w, for a record that is this ring's but
// cannot be verified: bytes that do not decode, or entries that fail to
// authenticate. A single altered byte always lands in the second case
// unless it turns the format number into a newer one.
func (r *KeyRing) classify(ctx context.Context, data []byte, cur *ringState) (w *working, damage, err error) {
	rec, err := decodeRecord(data)
	if errors.Is(err, errNewerFormat) {
		// Overwriting it would downgrade every newer server's ring.
		return nil, nil, fmt.Errorf("%w: %q: %w", ErrInvalidRing, r.cfg.ringKey, err)
	}
	if err != nil {
		return nil, err, nil
	}
	w, bad, ours, err := r.verify(ctx, rec, cur)
	if err != nil {
		return nil, nil, err
	}
	if len(bad) == 0 {
		return w, nil, nil
	}
	damage = fmt.Errorf("%s", strings.Join(bad, "; "))
	if cur != nil && !ours {
		return nil, nil, fmt.Errorf("%w: %q: no entry authenticates with this ring's KEKs and none is one this server holds (%v): another ring under the same KEK id? Not overwriting it",
			ErrInvalidRing, r.cfg.ringKey, damage)
	}
	return w, damage, nil
}

// verify authenticates every entry of rec with the ring's KEKs. Entries
// identical to ones already verified are taken from cur without a KEK call,
// so a KMS-backed KEK is called only for what changed.
//
// It returns the entries that authenticate in w and describes in bad those
// that do not; ours reports whether the record is tied to this ring (an
// entry authenticates, or a bad one carries an id or wrapped bytes that
// cur holds), which tells damage from a foreign ring. An entry under a KEK
// id the ring lacks is an error (err), unless its wrapped bytes are those
// of an entry cur holds: then only its KEK id was altered, and it is bad.
func (r *KeyRing) verify(ctx context.Context, rec *record, cur *ringState) (w *working, bad []string, ours bool, err error) {
	w = &working{keys: make(map[keyID]*dataKey, len(rec.keys)), revoked: make(map[keyID]*revEntry, len(rec.revoked))}
	var known map[string]bool // wrapped bytes and tags cur holds
	if cur != nil {
		known = make(map[string]bool, len(cur.keys)+len(cur.revoked))
		for _, k := range cur.keys {
			known[string(k.wrapped)] = true
		}
		for _, rv := range cur.revoked {
			known[string(rv.tag)] = true
		}
	}
	fail := func(format string, args ...any) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %q: %s", ErrInvalidRing, r.cfg.ringKey, fmt.Sprintf(format, args...))
	}
	for i := range rec.keys {
		e := &rec.keys[i]
		if cur != nil {
			if k := cur.keys[e.id]; k != nil && k.keyEntry.equal(e) {
				w.keys[e.id] = k
				ours = true
				continue
			}
		}
		kek := r.keks[e.kekID]
		if kek == nil {
			if known[string(e.wrapped)] {
				bad = append(bad, fmt.Sprintf("key %s names KEK %q, but its wrapped bytes are those of a key this server holds under another KEK", e.id, e.kekID))
				ours = true
				continue
			}
			return nil, nil, false, fail("key %s is wrapped by KEK %q, which this ring does not have (add it with WithKEKs)", e.id, e.kekID)
		}
		if e.kekKind != "" && e.kekKind != kindOf(kek) {
			bad = append(bad, fmt.Sprintf("key %s records KEK kind %q, but this ring's KEK %q is of kind %q", e.id, e.kekKind, e.kekID, kindOf(kek)))
			if cur != nil && (cur.keys[e.id] != nil || known[string(e.wrapped)]) {
				ours = true
			}
			continue
		}
		secret, err := kek.Unwrap(ctx, e.wrapped, keyAAD(e))
		if err != nil || len(secret) != masterKeyLen {
			if err := ctx.Err(); err != nil {
				return nil, nil, false, err
			}
			if errors.Is(err, ErrKEKUnavailable) {
				// No verdict on the record: fail now rather than call a
				// KEK that is down once per key, or treat the record
				// as damaged and rewrite it.
				return nil, nil, false, fmt.Errorf("protect: key ring %q: key %s: %w", r.cfg.ringKey, e.id, err)
			}
			bad = append(bad, fmt.Sprintf("key %s does not unwrap with KEK %q: its dates, id or wrapped bytes were altered, or the KEK is not the one that wrapped it", e.id, e.kekID))
			if cur != nil && (cur.keys[e.id] != nil || known[string(e.wrapped)]) {
				ours = true
			}
			continue
		}
		k := &dataKey{keyEntry: *e, secret: secret, info: hkdfInfo(e.id)}
		k.wrapped = bytes.Clone(e.wrapped)
		w.keys[e.id] = k
		ours = true
	}
	for i := range rec.revoked {
		e := &rec.revoked[i]
		if cur != nil {
			if rv := cur.revoked[e.id]; rv != nil && rv.equal(e) {
				w.revoked[e.id] = rv
				ours = true
				continue
			}
		}
		kek := r.keks[e.kekID]
		if kek == nil {
			if known[string(e.tag)] {
				bad = append(bad, fmt.Sprintf("revocation of %s names KEK %q, but its tag is one this server holds under another KEK", e.id, e.kekID))
				ours = true
				continue
			}
			return nil, nil, false, fail("revocation of %s is signed by KEK %q, which this ring does not have (add it with WithKEKs)", e.id, e.kekID)
		}
		got, err := kek.Unwrap(ctx, e.tag, revAAD(e))
		if err != nil || !bytes.Equal(got, e.id[:]) {
			if err := ctx.Err(); err != nil {
				return nil, nil, false, err
			}
			if errors.Is(err, ErrKEKUnavailable) {
				return nil, nil, false, fmt.Errorf("protect: key ring %q: revocation of %s: %w", r.cfg.ringKey, e.id, err)
			}
			bad = append(bad, fmt.Sprintf("revocation of %s does not verify with KEK %q", e.id, e.kekID))
			if cur != nil && (cur.keys[e.id] != nil || cur.revoked[e.id] != nil || known[string(e.tag)]) {
				ours = true
			}
			continue
		}
		rv := *e
		rv.tag = bytes.Clone(e.tag)
		w.revoked[e.id] = &rv
		ours = true
	}
	if rec.naming != nil {
		ns, why, tied, err := r.verifyNaming(ctx, rec.naming, cur)
		if err != nil {
			return nil, nil, false, err
		}
		if why != "" {
			bad = append(bad, why)
		}
		w.naming = ns
		ours = ours || tied
	}
	return w, bad, ours, nil
}
