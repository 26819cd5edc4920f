package surveys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cookies. The session cookie holds only the account id (MSAL's home
// account id, "oid.tid") and when the session began, signed with a key
// every instance of the farm shares: tokens stay in the token cache, so
// any instance serves any session, and signing out deletes them there.
// The sign-in cookie carries the authorization request's state, nonce and
// PKCE verifier from the instance that sent the browser to sign in to the
// instance that receives the answer, sealed (AES-GCM), for ten minutes.
//
// Both are HttpOnly and SameSite=Lax (sent on the provider's redirect back,
// a top-level GET, but not on another site's POST, which is what protects
// the forms from cross-site requests together with their CSRF field). They
// are not Secure only because the example serves plain HTTP on loopback:
// behind TLS, set Secure.

const (
	sessionCookie  = "surveys_session"
	signInCookie   = "surveys_signin"
	sessionMaxAge  = 8 * time.Hour
	signInLifetime = 10 * time.Minute
)

// keys are the farm's cookie keys, derived from one secret that every
// instance is given (here: made at start-up; in production: from the
// farm's secret store, so that a restart keeps sessions).
type keys struct {
	mac  []byte
	aead cipher.AEAD
}

func newKeys(secret []byte) *keys {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	block, _ := aes.NewCipher(derive("surveys sign-in cookie")) // 32 bytes: never fails
	aead, _ := cipher.NewGCM(block)
	return &keys{mac: derive("surveys session cookie"), aead: aead}
}

// session is a signed-in user's session.
type session struct {
	AccountID string // MSAL's home account id, oid.tid
	Started   int64  // unix nanoseconds
}

// Tenant returns the tenant of the session's account.
func (s session) Tenant() string {
	_, tid, _ := strings.Cut(s.AccountID, ".")
	return tid
}

// ID names the session for its counters and its CSRF field; it reveals
// nothing of the account.
func (s session) ID(k *keys) string {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte("id\x00" + s.AccountID + "\x00" + strconv.FormatInt(s.Started, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// csrf is the value the session's forms carry.
func (s session) csrf(k *keys) string {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte("csrf\x00" + s.ID(k)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func (k *keys) sign(payload string) string {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (k *keys) setSession(w http.ResponseWriter, s session) {
	v := k.sign(base64.RawURLEncoding.EncodeToString([]byte(s.AccountID)) + "." + strconv.FormatInt(s.Started, 10))
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		MaxAge: int(sessionMaxAge / time.Second)})
}

// readSession returns the request's session, if it carries a valid one.
func (k *keys) readSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 || !hmac.Equal([]byte(k.sign(c.Value[:i])), []byte(c.Value)) {
		return session{}, false
	}
	idPart, startPart, ok := strings.Cut(c.Value[:i], ".")
	id, err1 := base64.RawURLEncoding.DecodeString(idPart)
	started, err2 := strconv.ParseInt(startPart, 10, 64)
	if !ok || err1 != nil || err2 != nil || time.Since(time.Unix(0, started)) > sessionMaxAge || len(id) == 0 {
		return session{}, false
	}
	return session{AccountID: string(id), Started: started}, true
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// signIn is what the sign-in cookie carries between the request to the
// provider and its answer.
type signIn struct {
	Kind     string // "signin" or "enroll"
	State    string
	Nonce    string
	Verifier string
	Return   string // where to go after sign-in
	Expires  int64
}

func (k *keys) setSignIn(w http.ResponseWriter, s signIn) {
	s.Expires = time.Now().Add(signInLifetime).Unix()
	plain, _ := json.Marshal(s)
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := k.aead.Seal(nonce, nonce, plain, []byte(signInCookie))
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: base64.RawURLEncoding.EncodeToString(sealed), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: int(signInLifetime / time.Second)})
}

// takeSignIn returns the request's sign-in cookie, if valid and of kind,
// and clears it: each authorization response is accepted once.
func (k *keys) takeSignIn(w http.ResponseWriter, r *http.Request, kind string) (signIn, bool) {
	c, err := r.Cookie(signInCookie)
	if err != nil {
		return signIn{}, false
	}
	clearCookie(w, signInCookie)
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	ns := k.aead.NonceSize()
	if err != nil || len(sealed) < ns {
		return signIn{}, false
	}
	plain, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(signInCookie))
	var s signIn
	if err != nil || json.Unmarshal(plain, &s) != nil || s.Kind != kind || time.Now().Unix() > s.Expires {
		return signIn{}, false
	}
	return s, true
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Counts are how many of the API calls' tokens came from the shared cache
// and how many from the token endpoint.
type Counts struct {
	Cache, Endpoint int
}

// Stats counts where the pages' API tokens came from, per session and for
// the whole farm. They are a demonstration's counters, kept in the
// process that runs the farm; a real farm would export metrics instead.
type Stats struct {
	mu       sync.Mutex
	total    Counts
	sessions map[string]*Counts
}

// record counts a token for session id (empty: none) and returns the
// session's and the farm's counts after it.
func (s *Stats) record(id string, fromCache bool) (sess, total Counts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions == nil {
		s.sessions = make(map[string]*Counts)
	}
	c := s.sessions[id]
	if c == nil {
		c = &Counts{}
		s.sessions[id] = c
	}
	if fromCache {
		c.Cache++
		s.total.Cache++
	} else {
		c.Endpoint++
		s.total.Endpoint++
	}
	return *c, s.total
}

// Total returns the farm's counts.
func (s *Stats) Total() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}
