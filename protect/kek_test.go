package protect_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/protect"
)

func TestAESKeyWrapper(t *testing.T) {
	key := bytes.Repeat([]byte{1}, protect.KEKSize)
	if _, err := protect.NewAESKeyWrapper("k", key[:16]); err == nil {
		t.Fatal("accepted a 16-byte KEK")
	}
	for _, id := range []string{"", "has space", strings.Repeat("x", 129)} {
		if _, err := protect.NewAESKeyWrapper(id, key); err == nil {
			t.Fatalf("accepted KEK id %q", id)
		}
	}
	w := testKEK(t, "kek-a", 1)
	wrapped, err := w.Wrap(ctx, []byte("secret"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, []byte("secret")) {
		t.Fatal("wrap left the secret in clear")
	}
	if got, err := w.Unwrap(ctx, wrapped, []byte("aad")); err != nil || string(got) != "secret" {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
	if _, err := w.Unwrap(ctx, wrapped, []byte("aaD")); err == nil {
		t.Fatal("unwrapped under other associated data")
	}
	// Same key bytes, another id: another KEK.
	if _, err := testKEK(t, "kek-b", 1).Unwrap(ctx, wrapped, []byte("aad")); err == nil {
		t.Fatal("a wrapper with another id unwrapped")
	}
	for n := range wrapped {
		if _, err := w.Unwrap(ctx, wrapped[:n], []byte("aad")); err == nil {
			t.Fatalf("unwrapped a wrap truncated to %d bytes", n)
		}
	}
}

func writeFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func TestLoadKeyFile(t *testing.T) {
	key := make([]byte, protect.KEKSize)
	for i := range key {
		key[i] = byte(i * 7)
	}
	for name, data := range map[string][]byte{
		"raw":         key,
		"base64":      []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
		"base64 url":  []byte(base64.RawURLEncoding.EncodeToString(key)),
		"hex":         []byte(hex.EncodeToString(key) + "\n"),
		"hex spacing": []byte("  " + hex.EncodeToString(key) + " \r\n"),
	} {
		got, err := protect.LoadKeyFile(writeFile(t, data, 0o600))
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: LoadKeyFile = %x, %v", name, got, err)
		}
	}
	if runtime.GOOS != "windows" {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
			path := writeFile(t, []byte(base64.StdEncoding.EncodeToString(key)), mode)
			_, err := protect.LoadKeyFile(path)
			if err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("mode %04o: err = %v, want one that says chmod 600", mode, err)
			}
		}
		if _, err := protect.LoadKeyFile(writeFile(t, key, 0o400)); err != nil {
			t.Errorf("mode 0400: %v", err)
		}
	}
	for name, data := range map[string][]byte{
		"passphrase": []byte("correct horse battery staple 123"),
		"short":      []byte(base64.StdEncoding.EncodeToString(key[:16])),
		"empty":      {},
		"large":      bytes.Repeat([]byte("A"), 5000),
	} {
		_, err := protect.LoadKeyFile(writeFile(t, data, 0o600))
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), string(data)) && len(data) > 0 {
			t.Errorf("%s: the error repeats the file's content", name)
		}
	}
	if _, err := protect.LoadKeyFile(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
	if _, err := protect.LoadKeyFile(t.TempDir()); err == nil {
		t.Error("accepted a directory")
	}
}

func TestGenerateKeyFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	for _, p := range []string{a, b} {
		if err := protect.GenerateKeyFile(p); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
	}
	ka, err := protect.LoadKeyFile(a)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := protect.LoadKeyFile(b)
	if len(ka) != protect.KEKSize || bytes.Equal(ka, kb) {
		t.Fatal("generated keys are not 32 fresh random bytes")
	}
	if err := protect.GenerateKeyFile(a); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: err = %v, want fs.ErrExist", err)
	}
	if again, _ := protect.LoadKeyFile(a); !bytes.Equal(again, ka) {
		t.Fatal("the refused call changed the key file")
	}
}

func TestKeyFromEnv(t *testing.T) {
	key := bytes.Repeat([]byte{9}, protect.KEKSize)
	t.Setenv("PROTECT_TEST_KEK", base64.StdEncoding.EncodeToString(key))
	if got, err := protect.KeyFromEnv("PROTECT_TEST_KEK"); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("KeyFromEnv = %x, %v", got, err)
	}
	t.Setenv("PROTECT_TEST_KEK", "not-a-key-value")
	_, err := protect.KeyFromEnv("PROTECT_TEST_KEK")
	if err == nil || strings.Contains(err.Error(), "not-a-key-value") || !strings.Contains(err.Error(), "PROTECT_TEST_KEK") {
		t.Fatalf("bad value: err = %v, want one naming the variable and not its value", err)
	}
	if _, err := protect.KeyFromEnv("PROTECT_TEST_UNSET_KEK"); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("unset: err = %v", err)
	}
}
