package entratest_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestDiscoveryDocuments(t *testing.T) {
	srv := newServer(t)
	get := func(path string) map[string]any {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return m
	}
	cfg := get("/Contoso/v2.0/.well-known/openid-configuration")
	if cfg["issuer"] != srv.URL()+"/contoso/v2.0" || cfg["token_endpoint"] != srv.URL()+"/contoso/oauth2/v2.0/token" {
		t.Errorf("openid-configuration = %v", cfg)
	}
	if cfg := get("/common/v2.0/.well-known/openid-configuration"); cfg["issuer"] != srv.URL()+"/{tenantid}/v2.0" {
		t.Errorf("common issuer = %v", cfg["issuer"])
	}
	keys := get("/contoso/discovery/v2.0/keys")
	if k, _ := keys["keys"].([]any); len(k) != 1 {
		t.Errorf("jwks = %v", keys)
	}
	host := strings.TrimPrefix(srv.URL(), "https://")
	inst := get("/common/discovery/instance?api-version=1.1&authorization_endpoint=" +
		url.QueryEscape(srv.URL()+"/contoso/oauth2/v2.0/authorize"))
	if inst["tenant_discovery_endpoint"] != srv.URL()+"/contoso/v2.0/.well-known/openid-configuration" ||
		!strings.Contains(fmt.Sprint(inst["metadata"]), host) {
		t.Errorf("instance discovery = %v", inst)
	}
	if realm := get("/common/UserRealm/a@contoso.com?api-version=1.0"); realm["account_type"] != "Managed" {
		t.Errorf("user realm = %v", realm)
	}
}
