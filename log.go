package msalcache

import (
	"context"
	"log/slog"
)

// fingerprint names a store key in logs: a short piece of its hash, enough
// to correlate records, never the partition key.
func fingerprint(key string) string {
	if len(key) > 8 {
		return key[len(key)-8:]
	}
	return key
}

// log records an event of op ("replace", "export"...) on the partition
// stored under key. It takes the call's ctx so that a handler can attach
// the request's trace. Every record names the partition by its fingerprint
// only, and an error under "err", whose text the callers keep free of
// stored data.
func (a *Adapter) log(ctx context.Context, level slog.Level, msg, op, key string, attrs ...slog.Attr) {
	if !a.cfg.logger.Enabled(ctx, level) {
		return
	}
	all := append([]slog.Attr{slog.String("op", op), slog.String("key", fingerprint(key))}, attrs...)
	a.cfg.logger.LogAttrs(ctx, level, msg, all...)
}

// errAttr is the attribute under which every record carries its error.
func errAttr(err error) slog.Attr { return slog.Any("err", err) }
