package azkeyvault_test

// The Go snippets of the module's documentation that use this package,
// each in a function that gives it the variables it uses, so that the
// compiler checks them (the root package's TestSnippetsCompile finds each
// one here, line for line). None of them runs: Example shows the package
// at work against a fake vault.

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/msalcache/msalcache/driver"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/protect/azkeyvault"
)

// docs/security.md, a Key Vault key as the KEK.
var _ = func(managedIdentity azcore.TokenCredential) error {
	kek, err := azkeyvault.New("https://myvault.vault.azure.net", "msalcache-kek", managedIdentity, nil)
	if err != nil {
		return err
	}
	_ = kek
	return nil
}

// The package's doc comment.
var _ = func(ctx context.Context, store driver.Store) error {
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	if err != nil {
		return err
	}
	kek, err := azkeyvault.New("https://myvault.vault.azure.net", "msalcache-kek", cred, nil)
	if err != nil {
		return err
	}
	ring, err := protect.NewKeyRing(ctx, store, kek)
	if err != nil {
		return err
	}
	return ring.Close()
}
