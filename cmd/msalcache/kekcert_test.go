package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/internal/ringadmin"
	"github.com/msalcache/msalcache/protect"
)

// An operator moves a ring from an AES KEK to a certificate with the CLI:
// keys rotate with both (the certificate primary) rewraps every key;
// afterwards the certificate alone lists, checks and opens everything.
func TestCertificateKEK(t *testing.T) {
	f, path, env := boltFarm(t, 2)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "kek.crt"), filepath.Join(dir, "kek.key")
	if err := protect.GenerateCertificateFiles(certFile, keyFile, ""); err != nil {
		t.Fatal(err)
	}
	w, err := protect.LoadCertificateKeyWrapper(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	certOnly := []string{"MSALCACHE_STORE=bbolt://" + path, "MSALCACHE_KEK_CERT=" + certFile, "MSALCACHE_KEK_KEY=" + keyFile}

	r := f.cli(env, "keys", "list").must(t, 0)
	if !strings.Contains(r.stdout, "KEK KIND") || !strings.Contains(r.stdout, " aes ") {
		t.Fatalf("keys list before the migration:\n%s", r.stdout)
	}
	// The certificate alone cannot open a ring still under the AES KEK.
	r = f.cli(certOnly, "doctor").must(t, 1)
	if !strings.Contains(r.stdout, kekID) {
		t.Fatalf("doctor with the certificate alone does not name the KEK it lacks:\n%s", r.stdout)
	}
	f.cli(append(env, "MSALCACHE_KEK_CERT="+certFile), "-kek-key", keyFile, "keys", "rotate").must(t, 0)

	r = f.cli(certOnly, "keys", "list", "-json").must(t, 0)
	var keys []keyOut
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("%d keys after the rotation, want 2", len(keys))
	}
	for _, k := range keys {
		if k.KEK != w.ID() || k.KEKKind != ringadmin.KindCertificate {
			t.Fatalf("key %s after the migration is under %s (%s)", k.ID, k.KEK, k.KEKKind)
		}
	}
	r = f.cli(certOnly, "doctor").must(t, 0)
	if !strings.Contains(r.stdout, "the primary KEK "+w.ID()+" (certificate) wrapping 2 key(s) unwraps") {
		t.Fatalf("doctor does not check the certificate KEK:\n%s", r.stdout)
	}
	f.cli(certOnly, "inspect", "-partition", f.users[0].HomeAccountID).must(t, 0)
	f.cli(certOnly, "stats").must(t, 0)

	// Another certificate fails, and -kek-key alone is a usage error.
	other, otherKey := filepath.Join(dir, "other.crt"), filepath.Join(dir, "other.key")
	if err := protect.GenerateCertificateFiles(other, otherKey, ""); err != nil {
		t.Fatal(err)
	}
	f.cli([]string{"MSALCACHE_STORE=bbolt://" + path}, "-kek-cert", other, "-kek-key", otherKey, "doctor").must(t, 1)
	if r := f.cli([]string{"MSALCACHE_STORE=bbolt://" + path}, "-kek-key", keyFile, "keys", "list").must(t, 2); !strings.Contains(r.stderr, "-kek-key needs -kek-cert") {
		t.Fatalf("-kek-key alone:\n%s", r.stderr)
	}
}
