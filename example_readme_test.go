package msalcache_test

// This file is the README's first program, verbatim from its import block
// to the end of run (TestSnippetsCompile checks it), so that the program a
// newcomer copies first always compiles. In a package that is not main, a
// function named main is an ordinary function: Example_program calls it,
// and has no Output comment because it needs an app registration to run.

import (
	"context"
	"errors"
	"log"
	"os"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/boltstore"
	"github.com/msalcache/msalcache/protect"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) (err error) {
	store, err := boltstore.Open("tokens.db") // one instance; a farm shares redisstore, pgstore, ...
	if err != nil {
		return err
	}
	defer store.Close()
	key, err := protect.KeyFromEnv("MSALCACHE_KEK") // 32 bytes, base64: openssl rand -base64 32
	if err != nil {
		return err
	}
	kek, err := protect.NewAESKeyWrapper("kek-1", key)
	if err != nil {
		return err
	}
	ring, err := protect.NewKeyRing(ctx, store, kek) // data keys that rotate on their own
	if err != nil {
		return err
	}
	defer ring.Close()
	adapter, err := msalcache.New(store, msalcache.WithProtector(ring))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, adapter.Close()) }() // Close reports what it could not store
	cred, err := confidential.NewCredFromSecret(os.Getenv("AZURE_CLIENT_SECRET"))
	if err != nil {
		return err
	}
	authority := "https://login.microsoftonline.com/" + os.Getenv("AZURE_TENANT_ID")
	// One pool per program: each call gets its own MSAL client, with the Adapter as its cache hook.
	pool, err := msalcache.NewClientPool(adapter, func(c cache.ExportReplace) (confidential.Client, error) {
		return confidential.New(authority, os.Getenv("AZURE_CLIENT_ID"), cred, confidential.WithCache(c))
	})
	if err != nil {
		return err
	}
	// Silent when any instance sharing the store holds the token: no request to Entra ID.
	ar, err := pool.AcquireTokenByCredential(ctx, []string{"https://graph.microsoft.com/.default"})
	if err != nil {
		return err
	}
	log.Printf("app token, expires %v", ar.ExpiresOn)
	return nil
}

func Example_program() {
	main()
}
