package entratest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/entratest"
)

// Bad input gets OAuth error JSON, never a panic or a dead server.
func TestTokenEndpointErrors(t *testing.T) {
	srv := newServer(t, entratest.WithClientSecret("strict", "s3"))
	srv.AddUser(tenant, "alice@contoso.com", "pw")
	cc := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {"s"}, "scope": {apiScope}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		tenant string
		form   url.Values
		status int
		err    string
	}{
		{"no grant", tenant, cc("grant_type", ""), 400, "invalid_request"},
		{"unknown grant", tenant, cc("grant_type", "magic"), 400, "unsupported_grant_type"},
		{"device code", tenant, cc("grant_type", "device_code"), 400, "unsupported_grant_type"},
		{"no client", tenant, cc("client_id", ""), 400, "invalid_request"},
		{"no secret", tenant, cc("client_secret", ""), 401, "invalid_client"},
		{"bad assertion", tenant, cc("client_secret", "", "client_assertion", "x", "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), 401, "invalid_client"},
		{"assertion type", tenant, cc("client_secret", "", "client_assertion", "a.b.c", "client_assertion_type", "x"), 401, "invalid_client"},
		{"strict wrong", tenant, cc("client_id", "strict"), 401, "invalid_client"},
		{"strict ok", tenant, cc("client_id", "strict", "client_secret", "s3"), 200, ""},
		{"no scope", tenant, cc("scope", ""), 400, "invalid_scope"},
		{"only oidc scopes", tenant, cc("scope", "openid profile offline_access"), 400, "invalid_scope"},
		{"not .default", tenant, cc("scope", "api://backend/read"), 400, "invalid_scope"},
		{"common tenant", "common", cc(), 400, "invalid_request"},
		{"bad tenant", "con%20toso", cc(), 400, "invalid_tenant"},
		{"no code", tenant, cc("grant_type", "authorization_code"), 400, "invalid_request"},
		{"bad code", tenant, cc("grant_type", "authorization_code", "code", "nope"), 400, "invalid_grant"},
		{"no refresh token", tenant, cc("grant_type", "refresh_token"), 400, "invalid_request"},
		{"bad refresh token", tenant, cc("grant_type", "refresh_token", "refresh_token", "nope"), 400, "invalid_grant"},
		{"password missing", tenant, cc("grant_type", "password", "username", "alice@contoso.com"), 400, "invalid_request"},
		{"password wrong", tenant, cc("grant_type", "password", "username", "alice@contoso.com", "password", "x"), 400, "invalid_grant"},
		{"password other tenant", "fabrikam", cc("grant_type", "password", "username", "alice@contoso.com", "password", "pw"), 400, "invalid_grant"},
		{"password common", "common", cc("grant_type", "password", "username", "alice@contoso.com", "password", "pw"), 200, ""},
		{"obo no use", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "assertion", "a.b.c"), 400, "invalid_request"},
		{"obo no assertion", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "requested_token_use", "on_behalf_of"), 400, "invalid_request"},
		{"obo bad assertion", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "requested_token_use", "on_behalf_of", "assertion", "%%%"), 400, "invalid_grant"},
		{"obo public", tenant, cc("grant_type", entratest.GrantOnBehalfOf, "requested_token_use", "on_behalf_of", "assertion", "a.b.c", "client_secret", ""), 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postToken(t, srv, tc.tenant, tc.form)
			if status != tc.status {
				t.Errorf("status %d, want %d (%v)", status, tc.status, body)
			}
			if got, _ := body["error"].(string); got != tc.err {
				t.Errorf("error %q, want %q (%v)", got, tc.err, body["error_description"])
			}
			if tc.err != "" {
				if d, _ := body["error_description"].(string); !strings.HasPrefix(d, "AADSTS") {
					t.Errorf("error_description %q lacks an AADSTS code", d)
				}
			}
		})
	}

	// Malformed requests.
	c := srv.Client()
	tokenURL := srv.URL() + "/" + tenant + "/oauth2/v2.0/token"
	check := func(name string, resp *http.Response, err error, want int) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] == "" {
			t.Errorf("%s: body not OAuth error JSON (%v)", name, err)
		}
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, want)
		}
	}
	resp, err := c.Get(tokenURL)
	check("GET", resp, err, http.StatusMethodNotAllowed)
	resp, err = c.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader("grant_type=%zz"))
	check("bad encoding", resp, err, http.StatusBadRequest)
	resp, err = c.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(strings.Repeat("a", 2<<20)))
	check("huge body", resp, err, http.StatusBadRequest)
	resp, err = c.Post(tokenURL, "application/json", strings.NewReader(`{"grant_type":"client_credentials"}`))
	check("JSON body", resp, err, http.StatusBadRequest)
	resp, err = c.Get(srv.URL() + "/nowhere")
	check("unknown path", resp, err, http.StatusNotFound)
	resp, err = c.Get(srv.URL() + "/common/discovery/instance?authorization_endpoint=%zz")
	check("bad discovery", resp, err, http.StatusBadRequest)

	// Still serving.
	if status, _ := postToken(t, srv, tenant, cc()); status != http.StatusOK {
		t.Errorf("server stopped serving: %d", status)
	}
}
