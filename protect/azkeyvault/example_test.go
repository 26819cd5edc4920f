package azkeyvault_test

import (
	"context"
	"fmt"
	"log"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys/fake"
	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/memstore"
	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/protect/azkeyvault"
)

// A key ring protected by a Key Vault key. In production cred is the
// server's managed identity (azidentity.NewManagedIdentityCredential) and
// Options is nil; here the vault is azkeys/fake's server, which this
// package's tests back with real RSA-OAEP-256.
func ExampleNew() {
	v := newVault()
	if _, err := v.newVersion("msalcache-kek", false); err != nil {
		log.Fatal(err)
	}
	opts := &azkeyvault.Options{ClientOptions: &azkeys.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: fake.NewServerTransport(v.server())}}}

	kek, err := azkeyvault.New("https://myvault.vault.azure.net", "msalcache-kek", &azfake.TokenCredential{}, opts)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	ring, err := protect.NewKeyRing(ctx, store, kek)
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	keys, _ := ringadmin.Keys(ctx, ring)
	fmt.Println(kek.ID(), keys[0].KEKKind)
	fmt.Printf("%+v\n", kek.Stats())
	// Output:
	// azkv:myvault.vault.azure.net/msalcache-kek azure-keyvault
	// {WrapKey:2 UnwrapKey:0 Failures:0}
}
