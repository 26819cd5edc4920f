package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The quickstart's promise: the second run makes no token request, and the
// cache file holds no token, field name or user name in clear.
func TestQuickstartTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "qs")
	addr := freeAddr(t)
	var first, second bytes.Buffer
	if err := run(context.Background(), &first, dir, addr, ""); err != nil {
		t.Fatalf("first run: %v\n%s", err, first.String())
	}
	if !strings.Contains(first.String(), "Total token-endpoint requests this run: 4.") {
		t.Fatalf("first run:\n%s", first.String())
	}
	if err := run(context.Background(), &second, dir, addr, ""); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if !strings.Contains(second.String(), "Total token-endpoint requests this run: 0.") || strings.Contains(second.String(), "token endpoint ") {
		t.Fatalf("second run made token requests:\n%s", second.String())
	}
	for _, name := range []string{"tokens.db", "master.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"RefreshToken", "AccessToken", "refresh_token", "home_account_id", "secret", "alice", "contoso"} {
		if bytes.Contains(raw, []byte(clear)) {
			t.Errorf("the cache file holds %q in clear", clear)
		}
	}
}
