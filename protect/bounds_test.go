package protect_test

import (
	"context"
	"testing"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
)

// unboundedStore hides memstore's ContextBounder, as a third-party store
// that does not declare it.
type unboundedStore struct{ driver.Store }

// remoteKEK is a KeyWrapper the ring cannot vouch for, such as one calling
// a KMS.
type remoteKEK struct{ protect.KeyWrapper }

func TestKeyRingBoundsContext(t *testing.T) {
	store := memstore.New()
	if !newRing(t, store, nil).BoundsContext() {
		t.Error("a ring over memstore with a local KEK does not bound its calls by ctx")
	}
	if newRing(t, unboundedStore{store}, nil).BoundsContext() {
		t.Error("a ring over a store that does not bound its calls claims it does")
	}
	r, err := protect.NewKeyRing(context.Background(), memstore.New(), remoteKEK{testKEK(t, "kek-1", 7)},
		protect.WithAutoRefresh(false), protect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if r.BoundsContext() {
		t.Error("a ring with a KEK that does not bound its calls claims it does")
	}
}
