package entratest

import (
	"fmt"
	"net/http"
	"time"
)

// oauthError is an OAuth 2.0 error response, shaped like the service's so
// that MSAL (and a caching layer that inspects MSAL's errors) sees the same
// error, status and AADSTS code it would see in production.
type oauthError struct {
	status int
	code   string // error
	desc   string // error_description
	codes  []int  // AADSTS codes
}

// newOAuthError prefixes msg with the AADSTS code, as the service does, so
// that a test can match the code in MSAL's error text. aadsts 0 means none.
func newOAuthError(status int, code string, aadsts int, msg string) *oauthError {
	e := &oauthError{status: status, code: code, desc: msg}
	if aadsts != 0 {
		e.desc = fmt.Sprintf("AADSTS%d: %s", aadsts, msg)
		e.codes = []int{aadsts}
	}
	return e
}

func errInvalidRequest(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusBadRequest, "invalid_request", aadsts, msg)
}

func errInvalidGrant(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusBadRequest, "invalid_grant", aadsts, msg)
}

func errInvalidClient(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusUnauthorized, "invalid_client", aadsts, msg)
}

func errInvalidScope(aadsts int, msg string) *oauthError {
	return newOAuthError(http.StatusBadRequest, "invalid_scope", aadsts, msg)
}

func errServer(msg string) *oauthError {
	return newOAuthError(http.StatusInternalServerError, "server_error", 0, msg)
}

// errMissing is the service's answer to a request without a parameter it
// needs (AADSTS900144), at the token and the authorize endpoint alike.
func errMissing(param string) *oauthError {
	return errInvalidRequest(900144, "The request body must contain the following parameter: '"+param+"'.")
}

// errUnknownUser is AADSTS50034. The token endpoint sends it as
// invalid_grant; the authorize endpoint, which has no grant to refuse, as
// login_required.
func errUnknownUser(code, username, tenant string) *oauthError {
	return newOAuthError(http.StatusBadRequest, code, 50034,
		fmt.Sprintf("The user account %s does not exist in the %s directory.", username, tenant))
}

// writeError sends e as the service's error JSON, with the trace and
// correlation ids and timestamp the service appends, so that code which
// parses or logs real error responses works on these too.
func writeError(w http.ResponseWriter, r *http.Request, e *oauthError) {
	now := time.Now().UTC()
	trace := stableUUID("trace", randomID(16))
	corr := r.Header.Get("client-request-id")
	if corr == "" {
		corr = stableUUID("correlation", randomID(16))
	}
	desc := fmt.Sprintf("%s Trace ID: %s Correlation ID: %s Timestamp: %s",
		e.desc, trace, corr, now.Format("2006-01-02 15:04:05Z"))
	codes := e.codes
	if codes == nil {
		codes = []int{}
	}
	writeJSON(w, e.status, map[string]any{
		"error":             e.code,
		"error_description": desc,
		"error_codes":       codes,
		"timestamp":         now.Format("2006-01-02 15:04:05Z"),
		"trace_id":          trace,
		"correlation_id":    corr,
	})
}
