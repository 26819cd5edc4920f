package msalcache

import "context"

// op is one Replace, Export or Remove: the Event it reports and the L1
// ticket it holds, each ended exactly once by finish, which the hook
// defers. The paths of a call say what the L1 should learn (keep) or drop
// (drop); none of them ends the ticket itself.
type op struct {
	a   *Adapter
	ctx context.Context
	e   observe.Event
	key string
	tk  *l1Ticket // nil: not registered with the L1
	// What finish tells the L1 of key: learn it at v (raw, doc), or, with
	// forget, drop what it holds (a failed write may still have landed).
	learn  bool
	v      driver.Version
	raw    []byte
	doc    *document
	forget bool
}

// startOp starts an operation of kind on behalf of ctx.
func (a *Adapter) startOp(ctx context.Context, kind observe.Op) op {
	return op{a: a, ctx: ctx, e: a.begin(kind)}
}

// register registers o on key with the L1, when there is one, and returns
// what the L1 holds of key.
func (o *op) register(key string) (l1Hit, bool) {
	if o.a.l1 == nil {
		return l1Hit{}, false
	}
	tk, hit, ok := o.a.l1.begin(key)
	o.key, o.tk = key, tk
	return hit, ok
}

// keep makes finish teach the L1 that key is at v, holding raw (doc).
func (o *op) keep(v driver.Version, raw []byte, doc *document) {
	o.learn, o.v, o.raw, o.doc, o.forget = true, v, raw, doc, false
}

// drop makes finish drop what the L1 holds of key.
func (o *op) drop() { o.learn, o.forget = false, true }

// finish ends o's L1 ticket, as keep or drop said, and reports its Event.
func (o *op) finish() {
	if o.tk != nil {
		o.a.l1End(o.tk, o.learn, o.v, o.raw, o.doc)
		if o.forget {
			o.a.l1.forget(o.key)
		}
		o.tk = nil
	}
	o.a.emit(o.ctx, &o.e)
}
