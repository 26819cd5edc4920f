package msalcache

import "github.com/msalcache/msalcache/driver"

// boundsContext reports whether v declares that it bounds its calls by ctx.
func boundsContext(v any) bool {
	b, ok := v.(driver.ContextBounder)
	return ok && b.BoundsContext()
}
