package main

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
)

// Blob is one stored partition as the tool sees it, before decryption.
type Blob struct {
	Key          string `json:"store_key"`
	Size         int    `json:"size"`
	DataKey      string `json:"data_key"` // key id, "plaintext" or "unknown"
	Lifetime     string `json:"lifetime"`
	lifetime     time.Duration
	lifetimeKnow bool
	raw          []byte
	version      driver.Version
}

// readBlob loads key and describes it; ErrNotFound when it vanished.
func (e *env) readBlob(ctx context.Context, s *storeurl.Store, key string) (*Blob, error) {
	raw, v, err := e.load(ctx, s, key)
	if err != nil {
		return nil, err
	}
	b := &Blob{Key: key, Size: len(raw), raw: raw, version: v}
	if id, err := protect.PayloadKeyID(raw); err == nil {
		b.DataKey = id
	} else if json.Valid(raw) {
		b.DataKey = "plaintext"
	} else {
		b.DataKey = "unknown"
	}
	b.lifetime, b.lifetimeKnow, err = e.lifetime(ctx, s, key)
	if err != nil {
		return nil, err
	}
	b.Lifetime = fmtLifetime(b.lifetime, b.lifetimeKnow)
	return b, nil
}

// open decrypts b with the ring (or takes it as is when it is plaintext).
func (e *env) open(ctx context.Context, b *Blob) ([]byte, error) {
	if b.DataKey == "plaintext" {
		return b.raw, nil
	}
	r, err := e.openRing(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	return r.Unprotect(cctx, b.raw, []byte(b.Key))
}

// summary is what inspect shows of a decrypted partition: identifiers,
// scopes and dates, never a token or a secret. Only named fields of
// MSAL's cache entries are read, so nothing else can leak.
type summary struct {
	Kind          string         `json:"kind"` // user, app, empty
	Accounts      []accountInfo  `json:"accounts"`
	AccessTokens  []accessInfo   `json:"access_tokens"`
	RefreshTokens []refreshInfo  `json:"refresh_tokens"`
	IDTokens      int            `json:"id_tokens"`
	AppMetadata   int            `json:"app_metadata"`
	Sections      map[string]int `json:"entries_by_section"`
}

type accountInfo struct {
	HomeAccountID string `json:"home_account_id"`
	Username      string `json:"username"`
	Realm         string `json:"realm"`
}

type accessInfo struct {
	HomeAccountID string    `json:"home_account_id,omitempty"`
	ClientID      string    `json:"client_id"`
	Realm         string    `json:"realm"`
	Scopes        string    `json:"scopes"`
	ExpiresOn     time.Time `json:"expires_on"`
	Expired       bool      `json:"expired"`
}

type refreshInfo struct {
	HomeAccountID string `json:"home_account_id"`
	ClientID      string `json:"client_id"`
	FamilyID      string `json:"family_id,omitempty"`
}

// entryFields are the only fields read from an entry.
type entryFields struct {
	HomeAccountID string          `json:"home_account_id"`
	Username      string          `json:"username"`
	Realm         string          `json:"realm"`
	ClientID      string          `json:"client_id"`
	Target        string          `json:"target"`
	FamilyID      string          `json:"family_id"`
	ExpiresOn     json.RawMessage `json:"expires_on"`
}

var errNotCache = errors.New("not an MSAL cache document")

// summarize reads an MSAL cache document. reveal false masks user names.
func summarize(plain []byte, now time.Time, reveal bool) (*summary, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(plain, &doc); err != nil {
		return nil, errNotCache
	}
	s := &summary{Sections: map[string]int{}}
	section := func(name string) map[string]entryFields {
		out := map[string]entryFields{}
		raw, ok := doc[name]
		if !ok {
			return out
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return out
		}
		for k, v := range m {
			var f entryFields
			if json.Unmarshal(v, &f) == nil {
				out[k] = f
			}
		}
		s.Sections[name] = len(out)
		return out
	}
	for _, f := range section("Account") {
		u := f.Username
		if !reveal {
			u = maskUser(u)
		}
		s.Accounts = append(s.Accounts, accountInfo{HomeAccountID: f.HomeAccountID, Username: u, Realm: f.Realm})
	}
	for _, f := range section("AccessToken") {
		exp := parseEpoch(f.ExpiresOn)
		s.AccessTokens = append(s.AccessTokens, accessInfo{HomeAccountID: f.HomeAccountID, ClientID: f.ClientID,
			Realm: f.Realm, Scopes: f.Target, ExpiresOn: exp, Expired: !exp.After(now)})
	}
	for _, f := range section("RefreshToken") {
		s.RefreshTokens = append(s.RefreshTokens, refreshInfo{HomeAccountID: f.HomeAccountID, ClientID: f.ClientID, FamilyID: f.FamilyID})
	}
	s.IDTokens = len(section("IdToken"))
	s.AppMetadata = len(section("AppMetadata"))
	sort.Slice(s.Accounts, func(i, j int) bool { return s.Accounts[i].HomeAccountID < s.Accounts[j].HomeAccountID })
	sort.Slice(s.AccessTokens, func(i, j int) bool {
		a, b := s.AccessTokens[i], s.AccessTokens[j]
		return a.Realm+a.Scopes < b.Realm+b.Scopes
	})
	switch {
	case len(s.Accounts) > 0 || len(s.RefreshTokens) > 0:
		s.Kind = "user"
	case len(s.AccessTokens) > 0:
		s.Kind = "app"
	default:
		s.Kind = "empty"
	}
	return s, nil
}

// usable reports whether the partition can still serve a token: a
// refresh token, or an access token not yet expired.
func (s *summary) usable() bool {
	if len(s.RefreshTokens) > 0 {
		return true
	}
	for _, at := range s.AccessTokens {
		if !at.Expired {
			return true
		}
	}
	return false
}

// parseEpoch reads MSAL's expires_on, a string of Unix seconds.
func parseEpoch(raw json.RawMessage) time.Time {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var n int64
		if json.Unmarshal(raw, &n) != nil {
			return time.Time{}
		}
		return time.Unix(n, 0)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

// maskUser keeps a user name's first letter and its domain:
// "alice@contoso.com" → "a****@contoso.com".
func maskUser(u string) string {
	if u == "" {
		return ""
	}
	local, domain, found := strings.Cut(u, "@")
	m := local[:1] + strings.Repeat("*", max(len(local)-1, 3))
	if found {
		return m + "@" + domain
	}
	return m
}
