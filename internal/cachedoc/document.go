package cachedoc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// MSAL's cache is one JSON object shared by every MSAL library: a few
// sections, each an object of entries keyed by MSAL's own cache keys. The
// adapter works on that shape to merge concurrent writers entry by entry and
// to tell which entries belong to which partition. It keeps entries as raw
// bytes: it never needs to understand a token, only to move it.
const (
	secAccessToken = iota
	secRefreshToken
	secIDToken
	secAccount
	secAppMetadata
	numSections
)

var sectionNames = [numSections]string{"AccessToken", "RefreshToken", "IdToken", "Account", "AppMetadata"}

// ErrNotCacheShape reports a blob that is JSON but not MSAL's cache shape;
// the adapter then falls back to last-writer-wins.
var ErrNotCacheShape = errors.New("msalcache: not an MSAL cache document")

// Document is a parsed MSAL cache. It is never modified after it is built,
// so several goroutines may read one.
type Document struct {
	sections [numSections]map[string]json.RawMessage
	// extra holds top-level fields other than the sections, kept as they
	// came so that a newer MSAL's additions survive a merge.
	extra map[string]json.RawMessage
}

// Parse splits MSAL's cache JSON into sections and entries. It
// walks the blob once, checking its syntax as it goes, without decoding the
// entries, which stay slices of b: an Export parses every blob it writes,
// and encoding/json's decoding (later json.Valid followed by a second walk)
// made that parse the cost of a write. Anything encoding/json would reject
// is ErrNotCacheShape (FuzzValidJSON and FuzzParseDocument hold the two to
// the same verdict).
func Parse(b []byte) (*Document, error) {
	s := scanner{b: b}
	if s.next() != '{' {
		return nil, ErrNotCacheShape
	}
	s.depth = 1 // the document's own braces, as encoding/json counts them
	d := &Document{}
	if s.peek() == '}' {
		s.i++
		return d, s.end()
	}
	for {
		name := s.key()
		i := slices.Index(sectionNames[:], name)
		switch {
		case s.bad:
		case i < 0:
			if d.extra == nil {
				d.extra = make(map[string]json.RawMessage)
			}
			d.extra[name] = s.value()
		case s.peek() == 'n':
			s.value() // null: an absent section
			d.sections[i] = nil
		case s.peek() != '{':
			return nil, ErrNotCacheShape
		default:
			d.sections[i] = s.entries()
		}
		switch s.next() {
		case ',':
		case '}':
			return d, s.end()
		default:
			return nil, ErrNotCacheShape
		}
	}
}

// maxDepth is encoding/json's nesting limit, kept so that the two agree on
// what is JSON.
const maxDepth = 10000

// scanner walks JSON and checks its syntax on the way. At the first error
// it sets bad and moves to the end, so every later read returns 0 and every
// loop over the input stops; callers check bad (or end) once.
type scanner struct {
	b     []byte
	i     int
	depth int
	bad   bool
}

func (s *scanner) fail() {
	s.bad = true
	s.i = len(s.b)
}

// end reports whether the walk met no error and only whitespace is left.
func (s *scanner) end() error {
	s.ws()
	if s.bad || s.i != len(s.b) {
		return ErrNotCacheShape
	}
	return nil
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// peek returns the next byte that is not whitespace, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i == len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) next() byte {
	c := s.peek()
	if s.i < len(s.b) {
		s.i++
	}
	return c
}

// key reads an object key and its colon.
func (s *scanner) key() string {
	if s.peek() != '"' {
		s.fail()
		return ""
	}
	raw := s.value()
	if s.next() != ':' {
		s.fail()
		return ""
	}
	if k, ok := knownKey(raw[1 : len(raw)-1]); ok {
		return k
	}
	k, _ := jsonString(raw) // raw is a string the scan checked
	return k
}

// knownKey returns, without allocating, the name of a section or a field
// MSAL-Go writes when body (a key's bytes between its quotes) is exactly
// that name. Every Export reads the section names and every field of each
// entry whose partition it must check, and a string made for each was a
// third of the allocations of a parse. Anything else (other keys, escaped
// spellings of these) is decoded as before.
func knownKey(body []byte) (string, bool) {
	switch string(body) { // compiled as a comparison of the bytes: no copy
	case "AccessToken":
		return "AccessToken", true
	case "RefreshToken":
		return "RefreshToken", true
	case "IdToken":
		return "IdToken", true
	case "Account":
		return "Account", true
	case "AppMetadata":
		return "AppMetadata", true
	case "home_account_id":
		return "home_account_id", true
	case "environment":
		return "environment", true
	case "realm":
		return "realm", true
	case "credential_type":
		return "credential_type", true
	case "client_id":
		return "client_id", true
	case "secret":
		return "secret", true
	case "target":
		return "target", true
	case "expires_on":
		return "expires_on", true
	case "extended_expires_on":
		return "extended_expires_on", true
	case "refresh_on":
		return "refresh_on", true
	case "cached_at":
		return "cached_at", true
	case "token_type":
		return "token_type", true
	case "user_assertion_hash":
		return "user_assertion_hash", true
	case "ext_cache_key":
		return "ext_cache_key", true
	case "family_id":
		return "family_id", true
	case "keyid":
		return "keyid", true
	case "local_account_id":
		return "local_account_id", true
	case "authority_type":
		return "authority_type", true
	case "username":
		return "username", true
	case "client_info":
		return "client_info", true
	case "alternative_account_id":
		return "alternative_account_id", true
	case "name":
		return "name", true
	case "given_name":
		return "given_name", true
	case "middle_name":
		return "middle_name", true
	case "family_name":
		return "family_name", true
	}
	return "", false
}

// entries reads an object of entries; later duplicates win, as in
// encoding/json.
func (s *scanner) entries() map[string]json.RawMessage {
	s.next() // '{'
	if s.peek() == '}' {
		s.i++
		return nil
	}
	s.depth++
	defer func() { s.depth-- }()
	m := make(map[string]json.RawMessage)
	for {
		k := s.key()
		v := s.value()
		if s.bad {
			return nil
		}
		m[k] = v
		if c := s.next(); c != ',' {
			if c != '}' {
				s.fail()
			}
			return m
		}
	}
}

// value reads one value, checking it, and returns its bytes (nil when it
// is not valid JSON).
func (s *scanner) value() json.RawMessage {
	s.ws()
	start := s.i
	s.skip()
	if s.bad {
		return nil
	}
	return s.b[start:s.i:s.i]
}

func (s *scanner) skip() {
	switch c := s.peek(); {
	case c == '{':
		s.container('}', true)
	case c == '[':
		s.container(']', false)
	case c == '"':
		s.str()
	case c == '-' || '0' <= c && c <= '9':
		s.number()
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	default:
		s.fail()
	}
}

// container reads an object or an array, s.i at its opening bracket.
func (s *scanner) container(end byte, object bool) {
	if s.depth++; s.depth > maxDepth {
		s.fail()
		return
	}
	s.i++
	if s.peek() == end {
		s.i++
		s.depth--
		return
	}
	for !s.bad {
		if object {
			if s.peek() != '"' {
				s.fail()
				return
			}
			s.str()
			if s.next() != ':' {
				s.fail()
				return
			}
		}
		s.skip()
		switch s.next() {
		case ',':
		case end:
			s.depth--
			return
		default:
			s.fail()
		}
	}
}

// str reads a string, s.i at its opening quote. Like encoding/json it
// accepts any byte from 0x20 up, valid UTF-8 or not.
//
// Most of an MSAL cache is the bytes of its tokens' strings, and every
// Export scans them at least twice (the parse, then ownership), so runs
// of bytes that need no look are skipped eight at a time; the first word
// holding a quote, a backslash or a control byte is read byte by byte as
// before.
func (s *scanner) str() {
	b := s.b
	for i := s.i + 1; i < len(b); {
		for i+8 <= len(b) && !needsLook(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return
		case c == '\\':
			if i+1 == len(b) {
				s.fail()
				return
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					s.fail()
					return
				}
				i += 6
			default:
				s.fail()
				return
			}
		case c < 0x20:
			s.fail()
			return
		default:
			i++
		}
	}
	s.fail()
}

// number reads a number as JSON's grammar has it: -?(0|[1-9][0-9]*)
// (.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		s.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			s.fail()
			return
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			s.fail()
			return
		}
		i = j
	}
	s.i = i
}

// needsLook reports whether any of the eight bytes of w is a quote, a
// backslash or below 0x20, the bytes str must stop at. It uses the
// classic word-at-a-time tests (Bit Twiddling Hacks, "determine if a word
// has a byte less than n"): (x - n*ones) &^ x & highs is zero exactly
// when no byte of x is below n (n <= 0x80), so with x = w XOR c*ones and
// n = 1 it finds a byte equal to c. A byte of 0x80 or more never sets a
// flag of its own, and a borrow only crosses from a byte that already
// set one, so the answer is exact, not a hint.
func needsLook(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	bs := w ^ (ones * '\\')
	return ((q-ones)&^q|(bs-ones)&^bs|(w-ones*0x20)&^w)&highs != 0
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (s *scanner) literal(lit string) {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.fail()
		return
	}
	s.i += len(lit)
}

// Footprint approximates the heap d holds beyond the bytes of the blob it
// was parsed from (its entries are slices of that blob): its maps and their
// keys. The L1 counts it against MaxBytes, since for a small partition it
// is about half of what an entry costs (BenchmarkL1Memory measures both).
func (d *Document) Footprint() int64 {
	if d == nil {
		return 0
	}
	// A Go map of n entries takes groups of 8 slots filled to 7/8, each
	// slot a string and a json.RawMessage (40 bytes) plus a control word
	// per group, and a header.
	const header, group = 48, 8 + 8*40
	n := int64(8 * (numSections + 1)) // the document's own fields
	add := func(m map[string]json.RawMessage) {
		if m == nil {
			return
		}
		groups := (int64(len(m))*8/7 + 7) / 8
		n += header + max(groups, 1)*group
		for k := range m {
			n += int64(len(k))
		}
	}
	for _, m := range d.sections {
		add(m)
	}
	add(d.extra)
	return n
}

// HasTokens reports whether the document holds anything worth storing:
// app metadata alone (which MSAL keeps after the last account is removed)
// is not.
func (d *Document) HasTokens() bool {
	for i := range secAppMetadata {
		if len(d.sections[i]) > 0 {
			return true
		}
	}
	return false
}

// IsUserCache reports whether the document holds a user's sign-in (a
// refresh token or an account), which lives much longer than app tokens.
func (d *Document) IsUserCache() bool {
	return len(d.sections[secRefreshToken]) > 0 || len(d.sections[secAccount]) > 0
}

// LatestExpiry returns the latest expires_on of the access tokens, or the
// zero time when none can be read.
func (d *Document) LatestExpiry() time.Time {
	var latest int64
	for _, raw := range d.sections[secAccessToken] {
		if n, ok := expiresOn(raw); ok && n > latest {
			latest = n
		}
	}
	if latest == 0 {
		return time.Time{}
	}
	return time.Unix(latest, 0)
}

// expiresOn reads an access token's expiry, in unix seconds. It scans for
// the one field rather than decoding the entry: Export runs it on every
// token of the partition, on every write.
func expiresOn(raw json.RawMessage) (int64, bool) {
	s := scanner{b: raw}
	if s.next() != '{' || s.peek() == '}' {
		return 0, false
	}
	for {
		k := s.key()
		v := s.value()
		if k == "expires_on" {
			// MSAL writes unix seconds as a JSON string; accept a number too.
			str, ok := jsonString(v)
			if !ok {
				str = string(v)
			}
			n, err := strconv.ParseInt(str, 10, 64)
			return n, err == nil
		}
		if s.next() != ',' {
			return 0, false
		}
	}
}

// EqualEntries reports whether two documents hold the same entries, byte for
// byte; the extra fields are ignored because MSAL rewrites them anyway.
func (d *Document) EqualEntries(o *Document) bool {
	for i := range numSections {
		a, b := d.sections[i], o.sections[i]
		if len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !bytes.Equal(v, w) {
				return false
			}
		}
	}
	return true
}

// Encode writes the document as MSAL's JSON, with keys sorted so that equal
// documents encode to equal bytes.
func (d *Document) Encode() []byte {
	size := 2
	for i := range numSections {
		for k, v := range d.sections[i] {
			size += len(k) + len(v) + 8
		}
	}
	for k, v := range d.extra {
		size += len(k) + len(v) + 4
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	first := true
	field := func(name string, value func([]byte) []byte) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = value(b)
	}
	for i, name := range sectionNames {
		entries := d.sections[i]
		if len(entries) == 0 {
			continue
		}
		field(name, func(b []byte) []byte { return appendObject(b, entries) })
	}
	for _, k := range sortedKeys(d.extra) {
		field(k, func(b []byte) []byte { return append(b, d.extra[k]...) })
	}
	return append(b, '}')
}

func appendObject(b []byte, m map[string]json.RawMessage) []byte {
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = append(b, m[k]...)
	}
	return append(b, '}')
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendJSONString quotes s as a JSON string. Cache keys are ASCII in
// practice; anything else is escaped or passed through as valid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
	}
	return append(b, '"')
}

// Union returns a document holding every entry of first and, where first
// has no entry of that key, the entries of others. MSAL filters what it
// reads by account and client, so extra entries never yield a wrong token.
func Union(first *Document, others []*Document) *Document {
	u := &Document{extra: first.extra}
	for i := range numSections {
		n := len(first.sections[i])
		for _, o := range others {
			n += len(o.sections[i])
		}
		if n == 0 {
			continue
		}
		m := make(map[string]json.RawMessage, n)
		for _, o := range others {
			for k, v := range o.sections[i] {
				m[k] = v
			}
		}
		for k, v := range first.sections[i] {
			m[k] = v
		}
		u.sections[i] = m
	}
	return u
}

func put(m map[string]json.RawMessage, k string, v json.RawMessage, hint int) map[string]json.RawMessage {
	if m == nil {
		m = make(map[string]json.RawMessage, hint)
	}
	m[k] = v
	return m
}

// Merge3 merges two writers' versions of one partition entry by entry,
// given the version both started from (base, nil when unknown):
//   - an entry only one side changed takes that side's bytes;
//   - an entry both changed takes ours (we write last);
//   - an entry one side removed and the other left alone is removed, so a
//     sign-out is never undone by a concurrent token refresh;
//   - an entry only one side added is kept.
func Merge3(base, ours, theirs *Document) *Document {
	if base == nil {
		base = &Document{}
	}
	out := &Document{extra: ours.extra}
	for i := range numSections {
		b, o, t := base.sections[i], ours.sections[i], theirs.sections[i]
		var m map[string]json.RawMessage
		for k, ov := range o {
			bv, inBase := b[k]
			tv, inTheirs := t[k]
			unchangedByUs := inBase && bytes.Equal(ov, bv)
			switch {
			case unchangedByUs && !inTheirs:
				// They removed it; we did not touch it.
			case unchangedByUs && !bytes.Equal(tv, bv):
				m = put(m, k, tv, len(o))
			default:
				m = put(m, k, ov, len(o))
			}
		}
		for k, tv := range t {
			if _, inOurs := o[k]; inOurs {
				continue
			}
			if _, inBase := b[k]; inBase {
				continue // we removed it
			}
			m = put(m, k, tv, len(t))
		}
		out.sections[i] = m
	}
	return out
}

// AccessTokens returns how many access tokens d holds.
func (d *Document) AccessTokens() int { return len(d.sections[secAccessToken]) }
