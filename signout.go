package msalcache

import (
	"context"
	"errors"
	"fmt"
)

// AccountRemover is the method of an MSAL-Go client that [SignOut] calls.
// confidential.Client and public.Client both have it, with A their Account
// type (confidential.Account, public.Account).
type AccountRemover[A any] interface {
	RemoveAccount(ctx context.Context, account A) error
}

// ErrNoAccountID is returned by [SignOut] when it is given no home account
// id: without one it cannot tell which stored partition to delete.
var ErrNoAccountID = errors.New("msalcache: SignOut: empty home account id: pass the account's HomeAccountID (what the session keeps)")

// SignOut signs a user out of client and out of every instance that shares
// adapter's store, in one call. It is what a web app's sign-out handler
// calls, because MSAL-Go's RemoveAccount alone is not enough with a shared
// cache: it writes under the empty partition key, so the user's own
// partition, with their refresh token, survives it and any instance would
// keep serving the user silently.
//
// homeAccountID is the account's HomeAccountID, which a web app keeps in its
// session; account is MSAL's Account for it (client.Account(ctx,
// homeAccountID) for a confidential client, one of client.Accounts(ctx) for
// a public one). A zero account, when this instance's MSAL no longer finds
// the user, is fine: the stored partition is deleted all the same, which is
// what matters when the store was unreachable while MSAL looked.
//
// SignOut calls client.RemoveAccount(ctx, account), then, unless the
// adapter was made WithSinglePartition, adapter.Remove(ctx, homeAccountID):
// with one partition for every account (public clients), RemoveAccount's
// own write already stores the cache without the user, and deleting the
// partition would sign out the other accounts too. It tries both steps
// whatever the first returns and reports their errors joined, so a caller
// that sees nil knows that neither MSAL nor the store holds the user's
// tokens any more; other instances' MSAL clients drop theirs on their next
// call, when their load of the partition misses.
func SignOut[A any](ctx context.Context, adapter *Adapter, client AccountRemover[A], account A, homeAccountID string) error {
	if adapter == nil || client == nil {
		return errors.New("msalcache: SignOut: pass the Adapter and the MSAL client it serves")
	}
	if homeAccountID == "" {
		return ErrNoAccountID
	}
	var errs []error
	if err := client.RemoveAccount(ctx, account); err != nil {
		errs = append(errs, fmt.Errorf("msalcache: SignOut: remove the account from MSAL's cache: %w", err))
	}
	if !adapter.cfg.singlePart {
		if err := adapter.Remove(ctx, homeAccountID); err != nil {
			errs = append(errs, fmt.Errorf("msalcache: SignOut: %w", err))
		}
	}
	return errors.Join(errs...)
}
