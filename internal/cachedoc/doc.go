// Package cachedoc reads, merges and writes the JSON cache document MSAL-Go
// exports, without decoding its entries: a hand-written scanner that walks
// a blob once (4.8 µs where encoding/json takes 75–84 µs, and fuzzed
// against encoding/json so that both reject the same inputs), the
// ownership rules that say which partition each entry belongs to, the
// three-way merge of two writers' documents, and the sign-in sessions
// named by the ID tokens' sid claims.
//
// A Document is never modified after it is built, so several goroutines
// may read one. Nothing here logs or returns the bytes it reads: errors
// name what was wrong, never the data.
package cachedoc
