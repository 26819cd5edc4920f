package main

import (
	"context"
	"fmt"

	"github.com/msalcache/msalcache/protect"
	"github.com/msalcache/msalcache/storeurl"
)

// loadKEKs reads the KEKs given: a certificate (-kek-cert, -kek-key)
// and an AES key (-kek-file or the -kek-env variable). With both, the
// certificate is the primary and the AES key an extra one, as on a server
// that is moving its ring from the one to the other; with neither, none.
// key is the AES KEK readKEK read, nil when none was given.
func (a *app) loadKEKs(ctx context.Context, key []byte, ringStore *storeurl.Store) (protect.KeyWrapper, []protect.KeyWrapper, error) {
	var cert protect.KeyWrapper
	if a.kekCert != "" {
		keyFile := a.kekKey
		if keyFile == "" {
			keyFile = a.kekCert
		}
		var err error
		if cert, err = protect.LoadCertificateKeyWrapper(a.kekCert, keyFile); err != nil {
			return nil, nil, &kekError{fmt.Errorf("-kek-cert: %w", err)}
		}
	} else if a.kekKey != "" {
		return nil, nil, usageError("-kek-key needs -kek-cert")
	}
	skip := ""
	if cert != nil {
		skip = cert.ID()
	}
	var aes protect.KeyWrapper
	var err error
	if key != nil {
		aes, err = a.kekWrapper(ctx, key, ringStore, skip)
	}
	switch {
	case err != nil:
		return nil, nil, err
	case cert == nil:
		return aes, nil, nil
	case aes == nil:
		return cert, nil, nil
	}
	return cert, []protect.KeyWrapper{aes}, nil
}

// doctorKEKs has every KEK the ring names, and the primary, prove that it
// still unwraps (protect.KeyRing.CheckKEKs): a vault permission or an HSM
// lost since the servers started shows here before their next rotation.
func doctorKEKs(ctx context.Context, e *env, r *protect.KeyRing, add func(level, check, detail, action string)) {
	cctx, cancel := e.a.callCtx(ctx)
	defer cancel()
	checks, err := r.CheckKEKs(cctx)
	if err != nil {
		add("fail", "kek", err.Error(), "")
		return
	}
	for _, c := range checks {
		role := "an older KEK"
		if c.Primary {
			role = "the primary KEK"
		}
		what := fmt.Sprintf("%s %s (%s) wrapping %d key(s)", role, c.ID, c.Kind, c.Keys)
		switch {
		case c.Err == nil:
			add("ok", "kek", what+" unwraps", "")
		case c.Kind == "":
			add("fail", "kek", c.Err.Error(), "pass that KEK too (-kek-file/-kek-env beside -kek-cert)")
		default:
			add("fail", "kek", what+" fails: "+c.Err.Error(), "check the certificate's private key, or the vault's permissions (keys/wrapKey, keys/unwrapKey)")
		}
	}
}
