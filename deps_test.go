package msalcache_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the root package links no backend, no
// OpenTelemetry and nothing a test or an example needs: go list -deps says
// what it links.
func TestRootPackageLinksNoOptionalDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"go.opentelemetry.io/", "github.com/prometheus/", "github.com/redis/", "github.com/bradfitz/gomemcache",
			"go.etcd.io/bbolt", "github.com/chromedp/", "github.com/jackc/", "github.com/msalcache/msalcache/",
		} {
			if strings.HasPrefix(dep, banned) && !strings.HasPrefix(dep, "github.com/msalcache/msalcache/internal/") {
				t.Errorf("the root package links %s", dep)
			}
		}
	}
}
