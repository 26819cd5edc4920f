package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/internal/testserver"
)

// The example's promise: 12 requests spread over two servers cost one
// token request per tenant.
func TestWebfarm(t *testing.T) {
	srv := testserver.Redis(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out, srv.Addr(), "webfarm-test:", filepath.Join(t.TempDir(), "kek")); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Token requests for the farm: 3 ") {
		t.Fatalf("want 3 token requests for the farm:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "web-1") || !strings.Contains(out.String(), "web-2") {
		t.Fatalf("both servers should have served:\n%s", out.String())
	}
}
