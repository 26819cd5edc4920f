package msalcache

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
