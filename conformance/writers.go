package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache"
)

// testManyWritersLoseNothing is the farm's worst write pattern: a fresh
// MSAL client per request (as a web handler builds one), 16 and then 64 of
// them at once on two instances, every one adding a token to the same
// app-token partition. Compare-and-set loses each race but one, so only
// retrying within the deadline (not a fixed round count) keeps every write.
//
// It drives the hook directly, as MSAL does (Replace, then Export of the
// cache plus one token), rather than through MSAL clients: 800 writes
// through MSAL and the token endpoint would cost minutes under the race
// detector, and testConcurrentWriters already proves the same path with
// real clients.
func testManyWritersLoseNothing(f *fixture) {
	const writes = 400
	hints := cache.ExportHints{PartitionKey: suiteClientID + "_" + suiteTenant + "_AppTokenCache"}
	for _, writers := range []int{16, 64} {
		// A generous deadline: the retries, not the deadline, are under
		// test, and the race detector on 2 cores is slow.
		adapters := []suiteAdapter{
			f.adapter(nil, msalcache.WithTimeout(time.Minute)),
			f.adapter(nil, msalcache.WithTimeout(time.Minute)),
		}
		next := make(chan int, writes)
		for i := range writes {
			next <- i
		}
		close(next)
		errs := make(chan error, writes)
		var wg sync.WaitGroup
		for w := range writers {
			a := adapters[w%len(adapters)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					c := &hookClient{} // a client per request
					if err := a.Replace(f.ctx, c, cache.ReplaceHints(hints)); err != nil {
						errs <- err
						continue
					}
					if err := c.addAppToken(fmt.Sprintf("w%d-%d", writers, i)); err != nil {
						errs <- err
						continue
					}
					if err := a.Export(f.ctx, c, hints); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			f.t.Fatalf("%d writers: hook call failed: %v", writers, err)
		}
		var failures, conflicts uint64
		for _, a := range adapters {
			failures += a.Stats().ExportFailures
			conflicts += a.Stats().Conflicts
		}
		fresh := &hookClient{}
		if err := f.adapter(nil).Replace(f.ctx, fresh, cache.ReplaceHints(hints)); err != nil {
			f.t.Fatal(err)
		}
		stored, err := fresh.accessTokens()
		if err != nil {
			f.t.Fatal(err)
		}
		lost := 0
		for i := range writes {
			if !stored[fmt.Sprintf("w%d-%d", writers, i)] {
				lost++
			}
		}
		if lost != 0 || failures != 0 {
			f.t.Fatalf("%d writers: %d of %d writes lost, %d exports gave up", writers, lost, writes, failures)
		}
		f.t.Logf("%d writers: 0 of %d writes lost, %d compare-and-set conflicts merged", writers, writes, conflicts)
	}
}

// hookClient stands in for one MSAL client's in-memory cache: what Replace
// hands it, it keeps; what it holds, Export gets.
type hookClient struct {
	mu   sync.Mutex
	data []byte
}

// Unmarshal implements cache.Unmarshaler.
func (c *hookClient) Unmarshal(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = bytes.Clone(b)
	return nil
}

// Marshal implements cache.Marshaler.
func (c *hookClient) Marshal() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.data), nil
}

// addAppToken adds an app token for scope, with only the fields that
// decide its partition and lifetime. It splices the entry into the bytes
// the adapter handed over instead of decoding them: the partition grows to
// 400 entries, and a decode per write would cost more than the adapter
// under test.
func (c *hookClient) addAppToken(scope string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	entry, err := json.Marshal(map[string]string{
		"credential_type": "AccessToken", "client_id": suiteClientID, "realm": suiteTenant,
		"target": scope, "expires_on": exp,
	})
	if err != nil {
		return err
	}
	entry = append(fmt.Appendf(nil, "%q:", "at-"+scope), entry...)
	section := []byte(`"AccessToken":{`)
	switch i := bytes.Index(c.data, section); {
	case i >= 0:
		at := i + len(section)
		if c.data[at] != '}' {
			entry = append(entry, ',')
		}
		c.data = slices.Concat(c.data[:at], entry, c.data[at:])
	case len(c.data) < 2 || !json.Valid(c.data):
		return fmt.Errorf("the adapter handed MSAL a cache it cannot read: %q", c.data)
	default: // no access token yet: open the section
		obj := bytes.TrimSpace(c.data)
		body := bytes.TrimSpace(obj[1 : len(obj)-1])
		out := slices.Concat([]byte("{"), section, entry, []byte("}"))
		if len(body) > 0 {
			out = append(append(out, ','), body...)
		}
		c.data = append(out, '}')
	}
	return nil
}

// accessTokens returns the scopes of the access tokens c holds.
func (c *hookClient) accessTokens() (map[string]bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var doc struct {
		AccessToken map[string]struct {
			Target string `json:"target"`
		}
	}
	if err := json.Unmarshal(c.data, &doc); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(doc.AccessToken))
	for _, at := range doc.AccessToken {
		out[at.Target] = true
	}
	return out, nil
}
