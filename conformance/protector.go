package conformance

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/msalcache/msalcache"
)

// RunProtectorTests checks that a driver.Protector is safe to put in
// front of a shared store: what it seals opens only with the same
// associated data (the Adapter passes the store key, which names the
// namespace and the user) and only under the protector's own keys; no
// altered, truncated or foreign input opens, and none makes it panic; two
// seals of one plaintext differ; and it is safe for concurrent use (run the
// suite with -race).
//
// newProtector is called once per subtest, and twice in CrossKeyFails: each
// call must return a protector with keys of its own, so that a blob from
// one does not open in another (for the protect key ring: a ring over a
// fresh store).
//
//	conformance.RunProtectorTests(t, func(t *testing.T) driver.Protector {
//		ring, err := protect.NewKeyRing(ctx, memstore.New(), kek)
//		if err != nil {
//			t.Fatal(err)
//		}
//		t.Cleanup(func() { ring.Close() })
//		return ring
//	})
func RunProtectorTests(t *testing.T, newProtector func(t *testing.T) driver.Protector) {
	t.Helper()
	h := &protectorHarness{newProtector: newProtector}
	for _, st := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"RoundTrip", h.testRoundTrip},
		{"EveryByteFlipFails", h.testEveryByteFlipFails},
		{"EncryptionsDiffer", h.testEncryptionsDiffer},
		{"CrossKeyFails", h.testCrossKeyFails},
		{"CrossAADFails", h.testCrossAADFails},
		{"MalformedInput", h.testMalformedInput},
		{"ConcurrentUse", h.testConcurrentUse},
	} {
		t.Run(st.name, st.fn)
	}
}

type protectorHarness struct {
	newProtector func(t *testing.T) driver.Protector
}

func (h *protectorHarness) open(t *testing.T) driver.Protector {
	t.Helper()
	p := h.newProtector(t)
	if p == nil {
		t.Fatal("newProtector returned nil")
	}
	return p
}

// storeKeyAAD models the associated data the Adapter passes: a store key
// naming a namespace and a hashed partition.
func protStoreKey(namespace, user string) []byte {
	return []byte("msalcache:" + namespace + ":" + user)
}

// seal calls Protect and fails the test on an error or a panic.
func protSeal(t *testing.T, p driver.Protector, plaintext, aad []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	if perr := protCatchPanic(func() { out, err = p.Protect(context.Background(), plaintext, aad) }); perr != nil {
		t.Fatalf("Protect(%d bytes) panicked: %v", len(plaintext), perr)
	}
	if err != nil {
		t.Fatalf("Protect(%d bytes): %v", len(plaintext), err)
	}
	return out
}

// unseal calls Unprotect, turning a panic into a test failure.
func protUnseal(t *testing.T, p driver.Protector, blob, aad []byte) ([]byte, error) {
	t.Helper()
	var out []byte
	var err error
	if perr := protCatchPanic(func() { out, err = p.Unprotect(context.Background(), blob, aad) }); perr != nil {
		t.Fatalf("Unprotect(%s) panicked: %v", protDescribe(blob), perr)
	}
	return out, err
}

// mustReject expects Unprotect to fail, and to return nothing with the
// error: half-decrypted data must never reach the caller.
func protReject(t *testing.T, p driver.Protector, blob, aad []byte, why string) {
	t.Helper()
	out, err := protUnseal(t, p, blob, aad)
	if err == nil {
		t.Fatalf("%s: Unprotect(%s) succeeded, want an error", why, protDescribe(blob))
	}
	if len(out) != 0 {
		t.Fatalf("%s: Unprotect returned %d bytes along with its error", why, len(out))
	}
}

func protOpen(t *testing.T, p driver.Protector, blob, aad, want []byte) {
	t.Helper()
	out, err := protUnseal(t, p, blob, aad)
	if err != nil {
		t.Fatalf("Unprotect of a %d-byte seal: %v", len(want), err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("Unprotect = %s, want %s", protDescribe(out), protDescribe(want))
	}
}

// protDescribe names a blob in a failure message by its size and first
// bytes, never by its whole content.
func protDescribe(b []byte) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("%d bytes % x...", len(b), b[:min(len(b), 8)])
}

func protCatchPanic(fn func()) (p any) {
	defer func() { p = recover() }()
	fn()
	return nil
}

func protRandom(r *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func protRand(t *testing.T) *rand.ChaCha8 {
	var seed [32]byte
	copy(seed[:], t.Name())
	return rand.NewChaCha8(seed)
}

func (h *protectorHarness) testRoundTrip(t *testing.T) {
	p := h.open(t)
	rng := protRand(t)
	aads := [][]byte{nil, protStoreKey("default", "0123456789abcdef"), protRandom(rng, 300)}
	for _, n := range []int{0, 1, 15, 16, 17, 4096, 1 << 20} {
		for _, aad := range aads {
			plain := protRandom(rng, n)
			keep := bytes.Clone(plain)
			aadKeep := bytes.Clone(aad)
			blob := protSeal(t, p, plain, aad)
			if !bytes.Equal(plain, keep) || !bytes.Equal(aad, aadKeep) {
				t.Fatal("Protect modified its input")
			}
			if n >= 16 && bytes.Contains(blob, plain) {
				t.Fatalf("the %d-byte seal contains its plaintext", n)
			}
			blobKeep := bytes.Clone(blob)
			protOpen(t, p, blob, aad, plain)
			if !bytes.Equal(blob, blobKeep) {
				t.Fatal("Unprotect modified its input")
			}
			// The result is the caller's: scribbling on it changes nothing.
			out, _ := protUnseal(t, p, blob, aad)
			for i := range out {
				out[i] ^= 0xFF
			}
			protOpen(t, p, blob, aad, plain)
		}
	}
	// Results of separate calls do not share memory.
	first := protSeal(t, p, []byte("first plaintext"), nil)
	second := protSeal(t, p, []byte("other plaintext"), nil)
	outFirst, _ := protUnseal(t, p, first, nil)
	protOpen(t, p, second, nil, []byte("other plaintext"))
	if string(outFirst) != "first plaintext" {
		t.Fatalf("an Unprotect result changed to %s after a later call: results must not share memory", protDescribe(outFirst))
	}
}

func (h *protectorHarness) testEveryByteFlipFails(t *testing.T) {
	p := h.open(t)
	rng := protRand(t)
	aad := protStoreKey("default", "user")
	small := protSeal(t, p, []byte("a small token cache: {\"AccessToken\":{}}"), aad)
	for i := range small {
		for _, mask := range []byte{0x01, 0x80, 0xFF} {
			bad := bytes.Clone(small)
			bad[i] ^= mask
			protReject(t, p, bad, aad, fmt.Sprintf("byte %d of %d flipped by %#02x", i, len(small), mask))
		}
	}
	big := protSeal(t, p, protRandom(rng, 64<<10), aad)
	positions := make([]int, 0, 512)
	for i := 0; i < 128; i++ {
		positions = append(positions, i, len(big)-1-i)
	}
	for range 256 {
		positions = append(positions, int(rng.Uint64()%uint64(len(big))))
	}
	for _, i := range positions {
		bad := bytes.Clone(big)
		bad[i] ^= 1 << (rng.Uint64() % 8)
		protReject(t, p, bad, aad, fmt.Sprintf("a bit of byte %d of %d flipped", i, len(big)))
	}
}

func (h *protectorHarness) testEncryptionsDiffer(t *testing.T) {
	p := h.open(t)
	aad := protStoreKey("default", "user")
	for _, plain := range [][]byte{nil, []byte("same plaintext, same associated data")} {
		seen := make(map[string]bool)
		for range 64 {
			blob := string(protSeal(t, p, plain, aad))
			if seen[blob] {
				t.Fatalf("two seals of the same %d-byte plaintext are equal: the protector is deterministic or reuses a nonce", len(plain))
			}
			seen[blob] = true
		}
	}
}

func (h *protectorHarness) testCrossKeyFails(t *testing.T) {
	a, b := h.open(t), h.open(t)
	aad := protStoreKey("default", "user")
	plain := []byte("tokens of one deployment")
	fromA := protSeal(t, a, plain, aad)
	fromB := protSeal(t, b, plain, aad)
	protReject(t, b, fromA, aad, "a blob of protector A opened by protector B")
	protReject(t, a, fromB, aad, "a blob of protector B opened by protector A")
	protOpen(t, a, fromA, aad, plain)
	protOpen(t, b, fromB, aad, plain)
}

func (h *protectorHarness) testCrossAADFails(t *testing.T) {
	p := h.open(t)
	aad := protStoreKey("app-a", "user-1")
	plain := []byte("tokens of user-1 in app-a")
	blob := protSeal(t, p, plain, aad)
	others := map[string][]byte{
		"other namespace":  protStoreKey("app-b", "user-1"),
		"other user":       protStoreKey("app-a", "user-2"),
		"prefix of aad":    aad[:len(aad)-1],
		"aad plus a byte":  append(bytes.Clone(aad), 0),
		"other case":       []byte(strings.ToUpper(string(aad))),
		"empty aad":        {},
		"nil aad":          nil,
		"aad split moved":  protStoreKey("app-a:user", "1"),
		"aad as plaintext": plain,
	}
	for why, other := range others {
		protReject(t, p, blob, other, why)
	}
	// And the other way: a blob sealed with no aad does not open with one.
	bare := protSeal(t, p, plain, nil)
	protReject(t, p, bare, aad, "a blob sealed without aad opened with one")
	protOpen(t, p, blob, aad, plain)
}

func (h *protectorHarness) testMalformedInput(t *testing.T) {
	p := h.open(t)
	rng := protRand(t)
	aad := protStoreKey("default", "user")
	valid := protSeal(t, p, []byte("a valid seal to cut up"), aad)
	protReject(t, p, nil, aad, "nil")
	protReject(t, p, []byte{}, aad, "empty")
	for n := 0; n < len(valid); n++ {
		protReject(t, p, bytes.Clone(valid[:n]), aad, fmt.Sprintf("truncated to %d of %d bytes", n, len(valid)))
		protReject(t, p, bytes.Clone(valid[n+1:]), aad, fmt.Sprintf("first %d bytes cut", n+1))
	}
	protReject(t, p, append(bytes.Clone(valid), 0), aad, "a byte appended")
	protReject(t, p, append(bytes.Clone(valid), valid...), aad, "the seal twice")
	for _, n := range []int{1, 4, 16, 64, 65, 66, 100, 1000, 4 << 20} {
		protReject(t, p, protRandom(rng, n), aad, fmt.Sprintf("%d random bytes", n))
		protReject(t, p, make([]byte, n), aad, fmt.Sprintf("%d zero bytes", n))
		protReject(t, p, bytes.Repeat([]byte{0xFF}, n), aad, fmt.Sprintf("%d 0xFF bytes", n))
	}
	// Keep the valid front and fill the rest with 0xFF or zeros: a length
	// field anywhere past the front now claims a huge (or zero) size.
	for n := 1; n < len(valid); n++ {
		for _, fill := range []byte{0x00, 0xFF} {
			bad := bytes.Clone(valid)
			for i := n; i < len(bad); i++ {
				bad[i] = fill
			}
			protReject(t, p, bad, aad, fmt.Sprintf("bytes from %d set to %#02x", n, fill))
		}
	}
}

func (h *protectorHarness) testConcurrentUse(t *testing.T) {
	p := h.open(t)
	shared := protSeal(t, p, []byte("shared"), protStoreKey("default", "shared"))
	workers := max(4, 2*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			aad := protStoreKey("default", fmt.Sprintf("user-%d", w))
			for i := range 100 {
				plain := []byte(fmt.Sprintf("worker %d message %d", w, i))
				blob, err := p.Protect(ctx, plain, aad)
				if err != nil {
					errs <- fmt.Errorf("worker %d: Protect: %w", w, err)
					return
				}
				got, err := p.Unprotect(ctx, blob, aad)
				if err != nil || !bytes.Equal(got, plain) {
					errs <- fmt.Errorf("round trip in worker %d: %v", w, err)
					return
				}
				got, err = p.Unprotect(ctx, shared, protStoreKey("default", "shared"))
				if err != nil || string(got) != "shared" {
					errs <- fmt.Errorf("shared blob in worker %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
