package cachedoc

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"unicode/utf8"
)

// Ownership: which partition an entry of MSAL's cache belongs to.
//
// MSAL-Go files every entry under a partition key it computes from the
// entry itself: a user's tokens and account under the home account id
// ("uid.utid"), app tokens under "clientID_tenant[_extKey]_AppTokenCache".
// The adapter applies the same rule to everything it hands to MSAL and to
// everything it stores, so that an entry of one account or app never lives
// under another partition's key, whatever the bytes look like: entries lent
// from other partitions (see Replace), a merge with another writer, or a
// store written by an older version or another tool. Deciding by the
// entry's fields, not by comparing bytes, is what makes the rule hold for
// blobs that are re-indented, reordered or carry fields MSAL does not know.

// ownerFields are the fields of an entry that decide its partition, by
// their JSON names and by the Go field names MSAL-Go's decoder also accepts
// as keys.
var ownerFields = [...]struct{ json, goName string }{
	{"home_account_id", "HomeAccountID"},
	{"client_id", "ClientID"},
	{"realm", "Realm"},
	{"ext_cache_key", "ExtCacheKey"},
}

const (
	fieldHome = iota
	fieldClient
	fieldRealm
	fieldExt
)

// entryPartition returns the partition key MSAL-Go would file the entry raw
// of section under, and false when it cannot be told for certain: raw is
// not an object, a deciding field is not a string, or a key could be read
// as a deciding field by one JSON decoder and not by another (a duplicate,
// a case variant, a Go field name). Such an entry belongs to no partition,
// so it is never stored nor handed to MSAL.
func entryPartition(section int, raw json.RawMessage) (string, bool) {
	var f [len(ownerFields)]string
	var seen [len(ownerFields)]bool
	s := scanner{b: raw}
	if s.next() != '{' {
		return "", false
	}
	if s.peek() != '}' {
		for {
			k := s.key()
			v := s.value()
			for i, of := range ownerFields {
				if k == of.json && !seen[i] {
					str, ok := jsonString(v)
					if !ok {
						return "", false
					}
					f[i], seen[i] = str, true
				} else if k == of.json || strings.EqualFold(k, of.json) || strings.EqualFold(k, of.goName) {
					return "", false // ambiguous: decoders disagree on it
				}
			}
			if s.next() != ',' {
				break
			}
		}
	}
	if s.bad {
		return "", false
	}
	if section == secAccessToken && f[fieldHome] == "" {
		key := f[fieldClient] + "_" + f[fieldRealm]
		if f[fieldExt] != "" {
			key += "_" + f[fieldExt]
		}
		return key + "_AppTokenCache", true
	}
	return f[fieldHome], true
}

// jsonString decodes v when it is a JSON string.
func jsonString(v json.RawMessage) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	plain := v[1 : len(v)-1]
	for _, c := range plain {
		if c == '\\' || c >= utf8.RuneSelf {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(plain), true
}

// OwnedBy returns the part of d that belongs to partitionKey, and how many
// entries it dropped. App metadata (one entry per client, no secret) is
// shared by every partition and always stays. Top-level fields other than
// MSAL's sections are dropped too: their owners cannot be told, and a
// future MSAL that stores entries there would otherwise bypass the rule.
//
// known, when not nil, is a document already known to belong to
// partitionKey (what the adapter handed MSAL, or stored): an entry equal
// byte for byte to known's entry under the same key is kept without being
// read again. Export filters MSAL's whole cache on every write, and most of
// it is what Replace handed over.
func (d *Document) OwnedBy(partitionKey string, known *Document) (*Document, int) {
	dropped := len(d.extra)
	out := &Document{}
	var foreign []string // of the section at hand
	for i := range numSections {
		src := d.sections[i]
		out.sections[i] = src
		if i == secAppMetadata {
			continue
		}
		var trusted map[string]json.RawMessage
		if known != nil {
			trusted = known.sections[i]
		}
		foreign = foreign[:0]
		for k, v := range src {
			if t, ok := trusted[k]; ok && bytes.Equal(t, v) {
				continue
			}
			if owner, ok := entryPartition(i, v); !ok || owner != partitionKey {
				foreign = append(foreign, k)
			}
		}
		// Copied only when something is dropped: the usual Export keeps
		// every entry, and shares the sections as they are.
		if len(foreign) > 0 {
			kept := maps.Clone(src)
			for _, k := range foreign {
				delete(kept, k)
			}
			if len(kept) == 0 {
				kept = nil
			}
			out.sections[i] = kept
			dropped += len(foreign)
		}
	}
	if dropped == 0 {
		return d, 0
	}
	return out, dropped
}
