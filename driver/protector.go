package driver

import "context"

// Protector encrypts and authenticates what the Adapter stores. The protect
// package provides one driven by a rotating key ring.
//
// The Adapter passes the store key as associated data, so a blob copied
// under another user's key, namespace or application fails to Unprotect.
// Unprotect must fail (and never panic) on any input it did not produce.
type Protector interface {
	// Protect seals plaintext, binding it to aad.
	Protect(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unprotect opens what Protect sealed with the same aad.
	Unprotect(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
}

// Reprotector is implemented by protectors whose keys rotate. The Adapter
// asks it whether a blob it loaded was sealed under a key that is no longer
// the current one; if so, the next Export rewrites the blob even when the
// cache did not change, so old keys drain out of the store on their own.
type Reprotector interface {
	// NeedsReprotect reports whether ciphertext should be sealed again
	// under the current key.
	NeedsReprotect(ciphertext []byte) bool
}

// KeyHasher is implemented by protectors that hold a secret for naming
// partitions. When the Adapter's Protector implements it, store keys are
// derived with HashKey instead of a plain SHA-256 of the partition key, so
// that someone who can read the store but holds no key cannot confirm that
// a given user has tokens cached by hashing that user's object and tenant
// ids.
type KeyHasher interface {
	// HashKey returns a keyed hash (HMAC-SHA256) of partitionKey. The
	// secret must be the same on every instance sharing the store and must
	// not change when data keys rotate: a new secret renames every
	// partition, so each is a miss once. HashKey is called on every
	// Replace and Export, so it must be cheap, must not block and must be
	// safe for concurrent use.
	HashKey(partitionKey string) [32]byte
}
