package msalcache

// callKind says which MSAL operation a hook call belongs to, when the
// Adapter knows it: ClientPool drives its clients itself and says, an
// MSAL client the application built with WithCache(adapter) does not.
type callKind uint8

const (
	// callUnknown: an MSAL client the application drives itself.
	callUnknown callKind = iota
	// callSilent: AcquireTokenSilent or Account, which use only what is
	// cached; what such a call stores is never a new sign-in.
	callSilent
	// callSignIn: AcquireTokenByAuthCode or AcquireTokenByCredential,
	// whose tokens come from a grant made now, after every earlier
	// removal.
	callSignIn
	// callOnBehalfOf: AcquireTokenOnBehalfOf.
	callOnBehalfOf
	// callSignOut: RemoveAccount inside SignOut.
	callSignOut
)

// callInfo is what the Adapter knows of the MSAL call behind a hook call.
type callInfo struct {
	// exclusive: the MSAL client serves one call at a time (ClientPool's
	// clients), so Replace hands over only the partition asked for and
	// never lends another (see clientState.handOverLending).
	exclusive bool
	kind      callKind
}
