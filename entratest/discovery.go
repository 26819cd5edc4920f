package entratest

import (
	"net/http"
	"net/url"
	"strings"
)

// The discovery endpoints: what MSAL fetches before its first token request
// to learn where the endpoints are (OpenID configuration), whether it may
// trust an authority and which hosts are aliases of it (instance
// discovery), whether a user is federated (user realm), and the keys that
// check the tokens' signatures (JWKS). None of them is counted by
// TokenRequests or delayed by WithLatency: what a test measures is the
// token endpoint, the calls a token cache exists to save.

// publicCloudAliases are the aliases the real instance discovery endpoint
// reports for the public cloud, so that MSAL treats those hosts as one
// environment against the emulator as it does in production.
var publicCloudAliases = []string{
	"login.microsoftonline.com",
	"login.windows.net",
	"login.microsoft.com",
	"sts.windows.net",
}

func (s *Server) handleInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	ae, err := url.Parse(r.URL.Query().Get("authorization_endpoint"))
	if err != nil || ae.Host == "" || ae.Scheme != "https" {
		writeError(w, r, errInvalidRequest(50049, "Unknown or invalid instance: authorization_endpoint is missing or not an https URL."))
		return
	}
	host := strings.ToLower(ae.Host)
	tenant, _, _ := strings.Cut(strings.TrimPrefix(ae.Path, "/"), "/")
	if tenant == "" {
		tenant = "common"
	}
	aliases := []string{host}
	for _, a := range publicCloudAliases {
		if a == host {
			aliases = publicCloudAliases
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + host + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           aliases,
		}},
	})
}

// handleUserRealm reports every user as managed (not federated), so MSAL's
// username/password flow posts the password grant instead of trying
// WS-Trust, which the emulator does not model.
func (s *Server) handleUserRealm(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("user")
	_, domain, ok := strings.Cut(name, "@")
	if !ok || domain == "" {
		domain = "entratest.invalid"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ver":                 "1.0",
		"account_type":        "Managed",
		"domain_name":         domain,
		"cloud_instance_name": "microsoftonline.com",
		"cloud_audience_urn":  "urn:federation:MicrosoftOnline",
	})
}

func (s *Server) handleOpenIDConfig(w http.ResponseWriter, r *http.Request) {
	tenant, oerr := tenantOf(r)
	if oerr != nil {
		writeError(w, r, oerr)
		return
	}
	base := s.baseURL(r)
	issuerTenant := tenant
	if isMultiTenant(tenant) {
		issuerTenant = "{tenantid}"
	}
	t := base + "/" + tenant
	pages := s.endpointBase(base) + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/" + issuerTenant + "/v2.0",
		"authorization_endpoint":                pages + "/oauth2/v2.0/authorize",
		"token_endpoint":                        t + "/oauth2/v2.0/token",
		"device_authorization_endpoint":         t + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  pages + "/oauth2/v2.0/logout",
		"jwks_uri":                              t + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt"},
		"response_modes_supported":              []string{"query", "form_post"},
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantPassword, GrantOnBehalfOf},
		"code_challenge_methods_supported":      []string{"S256", "plain"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"claims_supported": []string{"sub", "iss", "aud", "exp", "iat", "nbf", "name", "nonce",
			"oid", "tid", "preferred_username", "ver"},
		"request_uri_parameter_supported": false,
		"tenant_region_scope":             nil,
		"cloud_instance_name":             "microsoftonline.com",
		"cloud_graph_host_name":           "graph.windows.net",
		"msgraph_host":                    "graph.microsoft.com",
	})
}

func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request) {
	if _, oerr := tenantOf(r); oerr != nil {
		writeError(w, r, oerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": []any{s.jwk()}})
}
