// Package ringadmin holds what the operator CLI (cmd/msalcache) needs of
// package protect's key ring and an application never does: where the
// ring and its marker live in a store, the errors of a read-only ring, and
// the key id of a sealed payload. It is internal so that protect's public
// surface stays an application's manual; protect reads its constants and
// errors, and fills in PayloadKeyID when it is loaded.
package ringadmin

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RingKey is the store key of the ring's record unless
// protect.WithRingKey names another.
const RingKey = "msalcache/keyring/v1"

// ActivationDelay is how long before its activation a scheduled key is
// written to the ring unless protect.WithActivationDelay says otherwise;
// the CLI warns when the default key expires sooner than that.
const ActivationDelay = 24 * time.Hour

// markerSuffix names the marker record, written beside the ring, that
// remembers a ring existed; see protect's package documentation.
const markerSuffix = ".created"

// MarkerKey returns the store key of the marker kept beside the ring
// record ringKey: a reset of the ring deletes both.
func MarkerKey(ringKey string) string { return ringKey + markerSuffix }

// ErrReadOnly reports a write attempted through a KeyRing opened with
// protect.OpenReadOnly: Rotate, Revoke, or a refresh that would add or
// repair a key. Nothing was written.
var ErrReadOnly = errors.New("protect: key ring opened read-only (OpenReadOnly); open it with NewKeyRing to change it")

// ErrNoRing reports that protect.OpenReadOnly found neither a ring record
// nor its marker: the store never held a ring under that key (check the
// store, its prefix and -ring-key), or it was reset.
var ErrNoRing = errors.New("protect: the store holds no key ring")

// PayloadKeyID returns the id of the key that sealed payload, as
// ringadmin.KeyInfo.ID shows it, without any key: operators count blobs per
// key with it. Input that is not a protected payload fails with an error
// wrapping protect's not-a-payload sentinel. Package protect sets it when
// it is initialized, so it is set in any program that imports protect.
var PayloadKeyID func(payload []byte) (string, error)

// KeyStatus says what a key is used for now.
type KeyStatus int

// Key statuses. Every status but KeyRevoked decrypts.
const (
	// KeyPending is a key written ahead of its activation: it decrypts but
	// does not encrypt yet.
	KeyPending KeyStatus = iota + 1
	// KeyActive is activated and not expired: the newest such key is the
	// default.
	KeyActive
	// KeyExpired no longer encrypts, and still decrypts old blobs.
	KeyExpired
	// KeyRevoked neither encrypts nor decrypts.
	KeyRevoked
)

// String is the status as an operator reads it in logs and listings:
// "pending", "active", "expired" or "revoked".
func (s KeyStatus) String() string {
	switch s {
	case KeyPending:
		return "pending"
	case KeyActive:
		return "active"
	case KeyExpired:
		return "expired"
	case KeyRevoked:
		return "revoked"
	}
	return fmt.Sprintf("KeyStatus(%d)", int(s))
}

// KeyInfo describes one key of the ring, for operators. It holds no key
// material.
type KeyInfo struct {
	// ID names the key in payloads and in Revoke: 32 hex digits.
	ID string
	// Created, Activation and Expiration are the key's dates; zero for a
	// revoked key whose entry is gone from the record.
	Created, Activation, Expiration time.Time
	// Revoked reports a revoked key, revoked at RevokedAt.
	Revoked   bool
	RevokedAt time.Time
	// Status is the key's use now, by this server's clock.
	Status KeyStatus
	// Default marks the key Protect seals with now.
	Default bool
	// KEKID names the KEK that wraps the key in the record.
	KEKID string
	// KEKKind is that KEK's kind (KindAES, KindCertificate,
	// "azure-keyvault", ...); empty for a key of a record written before
	// kinds were recorded, until this version's first write records it.
	KEKKind string
}

// Keys reloads ring's record (ring is a *protect.KeyRing) and describes
// every key it knows, oldest activation first: the CLI's ring listing.
// Package protect sets it when it is initialized.
var Keys func(ctx context.Context, ring any) ([]KeyInfo, error)

// Kinds of KEK, as KeyInfo.KEKKind and protect.KEKStat.Kind show them and
// as the ring's record stores them beside each key's KEK id. A
// protect.KindedKeyWrapper names its own.
const (
	// KindAES is protect.NewAESKeyWrapper's: a local AES-256 key.
	KindAES = "aes"
	// KindCertificate is protect.NewCertificateKeyWrapper's: an X.509
	// certificate's key pair.
	KindCertificate = "certificate"
	// KindCustom is the kind recorded for a KeyWrapper that does not
	// name its own.
	KindCustom = "custom"
)
