// Package exampletest holds what the examples' tests share: an output
// writer to wait on, and a /metrics scrape with its hit count.
package exampletest

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// WatchWriter keeps what a running example prints and closes Seen once
// that contains the text it waits for.
type WatchWriter struct {
	mu   sync.Mutex
	b    strings.Builder
	want string
	// Seen is closed once the output contains the text.
	Seen chan struct{}
}

// NewWatchWriter returns a WatchWriter waiting for want.
func NewWatchWriter(want string) *WatchWriter {
	return &WatchWriter{want: want, Seen: make(chan struct{})}
}

// Write keeps p.
func (w *WatchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := strings.Contains(w.b.String(), w.want)
	w.b.Write(p)
	if !was && strings.Contains(w.b.String(), w.want) {
		close(w.Seen)
	}
	return len(p), nil
}

// String returns what was written so far.
func (w *WatchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Get returns the body of a GET of url, failing t unless it is a 200.
func Get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, b)
	}
	return string(b)
}

var (
	reOperation = regexp.MustCompile(`(?m)^msalcache_operations_total\{(.*)\} (\S+)$`)
	reLabel     = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
)

// ReplaceHits adds up the msalcache_operations_total samples of
// db_operation_name="replace" in a /metrics body: those a cache hit
// served (hit, reused, l1_hit), and all of them.
func ReplaceHits(t testing.TB, body string) (hits, all float64) {
	t.Helper()
	for _, m := range reOperation.FindAllStringSubmatch(body, -1) {
		labels := map[string]string{}
		for _, l := range reLabel.FindAllStringSubmatch(m[1], -1) {
			labels[l[1]] = l[2]
		}
		if labels["db_operation_name"] != "replace" {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", m[0], err)
		}
		all += v
		switch labels["msalcache_outcome"] {
		case "hit", "reused", "l1_hit":
			hits += v
		}
	}
	return hits, all
}
