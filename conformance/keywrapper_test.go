package conformance_test

import (
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/msalcache/msalcache/conformance"
	"github.com/msalcache/msalcache/internal/testcert"
	"github.com/msalcache/msalcache/protect"
)

var wrapperSerial atomic.Int64

// TestKeyWrappers runs the KEK suite against every KeyWrapper of package
// protect (package azkeyvault runs it against its own).
func TestKeyWrappers(t *testing.T) {
	t.Run("AES", func(t *testing.T) {
		conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
			key := make([]byte, protect.KEKSize)
			rand.Read(key)
			w, err := protect.NewAESKeyWrapper(fmt.Sprintf("aes-%d", wrapperSerial.Add(1)), key)
			if err != nil {
				t.Fatal(err)
			}
			return w
		})
	})
	t.Run("CertificateRSA", func(t *testing.T) {
		conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
			return testcert.RSA(t, 2048).Wrapper(t)
		})
	})
	for name, curve := range map[string]elliptic.Curve{"P256": elliptic.P256(), "P384": elliptic.P384()} {
		t.Run("CertificateEC"+name, func(t *testing.T) {
			conformance.RunKeyWrapperTests(t, func(t *testing.T) protect.KeyWrapper {
				return testcert.EC(t, curve).Wrapper(t)
			})
		})
	}
}
