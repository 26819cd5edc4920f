package entratest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// handler routes the endpoints MSAL-Go calls, in the paths the service
// serves them at, to their handlers: discovery.go, authorize.go and
// grants.go. Anything else is an OAuth error, so that a client calling an
// endpoint the emulator lacks fails loudly instead of hanging or parsing HTML.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /common/discovery/instance", s.handleInstanceDiscovery)
	mux.HandleFunc("GET /common/UserRealm/{user...}", s.handleUserRealm)
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.handleOpenIDConfig)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.handleKeys)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/authorize", s.handleAuthorize)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", s.handleToken)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/devicecode", s.handleDeviceCode)
	mux.HandleFunc("/{tenant}/v2.0/adminconsent", s.handleAdminConsent)
	mux.HandleFunc("/{tenant}/oauth2/v2.0/logout", s.handleLogout)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, newOAuthError(http.StatusNotFound, "not_found", 0,
			fmt.Sprintf("entratest: no endpoint at %s %s", r.Method, r.URL.Path)))
	})
	return recoverer(mux)
}

// recoverer turns a panic in a handler into a server_error response, so a
// bug in the emulator shows up as a failed token call, not a dead server.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				writeError(w, r, errServer(fmt.Sprintf("entratest: internal error: %v", v)))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// writeJSON sends v with the headers the service sends: MSAL does not care,
// but a proxy or cache between a test's client and the emulator must not
// keep token responses.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"server_error","error_description":"entratest: cannot encode response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// baseURL is the scheme and host the request was sent to: the server's own
// address, or a Microsoft login host when the request came through the
// Client's redirection. Documents and tokens name it, because MSAL checks
// that the issuer and endpoints match the authority it was given.
func (s *Server) baseURL(r *http.Request) string {
	if r.Host == "" || strings.ContainsAny(r.Host, "/?#@ ") {
		return s.url
	}
	return "https://" + strings.ToLower(r.Host)
}

// tenantOf returns the request's {tenant} path segment, lower-cased, as
// MSAL lower-cases authorities; a segment that cannot be a tenant is the
// service's invalid_tenant.
func tenantOf(r *http.Request) (string, *oauthError) {
	t := strings.ToLower(r.PathValue("tenant"))
	ok := t != "" && len(t) <= 128
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			ok = false
			break
		}
	}
	if !ok {
		return "", newOAuthError(http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID.", r.PathValue("tenant")))
	}
	return t, nil
}
