package entratest_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/msalcache/msalcache/entratest"
)

func TestParseTokenErrors(t *testing.T) {
	for _, s := range []string{"", "abc", "a.b", "a.b.c.d", "!!.!!.!!", "e30.bm90IGpzb24.c2ln"} {
		if _, err := entratest.ParseToken(s); !errors.Is(err, entratest.ErrMalformedToken) {
			t.Errorf("ParseToken(%q) err = %v, want ErrMalformedToken", s, err)
		}
	}
	srv := newServer(t)
	other := newServer(t)
	status, body := postToken(t, other, tenant, url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"},
		"client_secret": {"s"}, "scope": {apiScope}})
	if status != 200 {
		t.Fatal(body)
	}
	tok := body["access_token"].(string)
	if _, err := srv.VerifyToken(tok); err == nil {
		t.Error("VerifyToken accepted another server's token")
	}
	if _, err := other.VerifyToken(tok); err != nil {
		t.Errorf("VerifyToken: %v", err)
	}
	if _, err := other.VerifyToken(tok[:len(tok)-4] + "AAAA"); err == nil {
		t.Error("VerifyToken accepted a bad signature")
	}
}
