package msalcache_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the root package links no backend, no
// OpenTelemetry and nothing a test or an example needs: go list -deps says
// what it links. Of the module's own packages it links only the contract
// packages (driver, observe, which import nothing but the standard
// library) and internal ones.
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
			if strings.HasPrefix(dep, banned) && !ownAllowed(dep) {
				t.Errorf("the root package links %s", dep)
			}
		}
	}
}

// ownAllowed reports whether the root package may link dep, one of the
// module's own packages.
func ownAllowed(dep string) bool {
	const own = "github.com/msalcache/msalcache/"
	return strings.HasPrefix(dep, own+"internal/") || dep == own+"driver" || dep == own+"observe"
}
