package memstore

// WithClock is withClock, for the package's external tests: a test hook,
// not part of the API.
var WithClock = withClock
