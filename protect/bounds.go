package protect

import "github.com/msalcache/msalcache"

// BoundsContext implements driver.ContextBounder, so the Adapter calls
// the ring without a goroutine of its own: a ring waits on nothing but its
// store and its key-encryption keys, so it returns once ctx is done when
// its store does and every KEK is local (NewAESKeyWrapper) or declares
// that it does too (a KEK in a remote KMS that cannot bound its calls
// leaves the Adapter's guard in place).
func (r *KeyRing) BoundsContext() bool {
	if b, ok := r.store.(driver.ContextBounder); !ok || !b.BoundsContext() {
		return false
	}
	for _, k := range r.keks {
		if b, ok := k.(driver.ContextBounder); !ok || !b.BoundsContext() {
			return false
		}
	}
	return true
}
