package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The quickstart's counts must say what they count: token calls, the
// requests among them, and the cache hook's loads and stores, which are
// not per token call. Once its output read "cache hits: 2, misses: 4" for
// four token calls, which looked like a broken cache.
func TestQuickstartSaysWhatItCounts(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, filepath.Join(t.TempDir(), "qs"), freeAddr(t), ""); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"Each line is one token call.", "(Replace) before each lookup", "(Export) after a change"} {
		if !strings.Contains(text, want) {
			t.Errorf("the output does not explain its counts (%q missing):\n%s", want, text)
		}
	}
	if strings.Contains(text, "cache hits:") {
		t.Errorf("the output still reports hook calls as cache hits:\n%s", text)
	}
	calls := regexp.MustCompile(`-> (\d+) token calls, (\d+) of them sent to the token endpoint\.`).FindAllStringSubmatch(text, -1)
	hook := regexp.MustCompile(`cache hook under them: (\d+) loads \(Replace: (\d+) found tokens in the store, (\d+) found none\), (\d+) stores \(Export\)`).FindAllStringSubmatch(text, -1)
	if len(calls) != 2 || len(hook) != 2 {
		t.Fatalf("want two groups, each with its token calls and its hook calls; got %d and %d:\n%s", len(calls), len(hook), text)
	}
	n := func(s string) int {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i := range calls {
		// Each group: two instances, two tenants or users; the first
		// instance's call requests a token, the second's is served from
		// the store.
		if n(calls[i][1]) != 4 || n(calls[i][2]) != 2 {
			t.Errorf("group %d: %s, want 4 token calls, 2 sent to the token endpoint", i+1, calls[i][0])
		}
		loads, found, none := n(hook[i][1]), n(hook[i][2]), n(hook[i][3])
		if loads != found+none || loads < n(calls[i][1]) {
			t.Errorf("group %d: %s: loads must be the sum of found and none, and at least one per token call", i+1, hook[i][0])
		}
		if n(hook[i][4]) != n(calls[i][2]) {
			t.Errorf("group %d: %s, want one store per token requested", i+1, hook[i][0])
		}
	}
}
