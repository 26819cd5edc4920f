package msalcache

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/entratest"
)

// Text MSAL-Go's decoder quotes from a stored partition never reaches the
// log: it can be a token or a user name.
func TestMSALDecodeErrorTextIsNotLogged(t *testing.T) {
	srv := entratest.NewServer()
	defer srv.Close()
	var logs bytes.Buffer
	s := newMapStore()
	a := newTestAdapter(t, s, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	const clientID, tenant, canary = "c0ffee00-0000-4000-8000-000000000001", "contoso", "CANARY-7f3a"
	planted := `{"AccessToken":{"k":{"client_id":"` + clientID + `","realm":"` + tenant + `","credential_type":"AccessToken","secret":"x","expires_on":"` + canary + `"}}}`
	if _, err := s.Save(ctx, a.StoreKey(clientID+"_"+tenant+"_AppTokenCache"), []byte(planted), driver.NoVersion, 0); err != nil {
		t.Fatal(err)
	}
	cred, err := confidential.NewCredFromSecret("secret")
	if err != nil {
		t.Fatal(err)
	}
	c, err := confidential.New(srv.Authority(tenant), clientID, cred, confidential.WithHTTPClient(srv.Client()),
		confidential.WithInstanceDiscovery(false), confidential.WithCache(a))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AcquireTokenByCredential(ctx, []string{"api://x/.default"}); err != nil {
		t.Fatalf("token call failed on a partition MSAL cannot decode: %v", err)
	}
	if a.Stats().CorruptBlobs == 0 {
		t.Fatalf("MSAL did not reject the planted partition (test is void): %s", logs.String())
	}
	if strings.Contains(logs.String(), canary) {
		t.Fatalf("stored data in the log: %s", logs.String())
	}
}
