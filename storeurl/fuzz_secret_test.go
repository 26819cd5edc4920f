package storeurl_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/storeurl"
)

// secretSchemes are the scheme parts FuzzSecretNeverShown builds URLs
// with: every scheme the package knows, with and without the "//", plus
// an unknown one and none. bbolt's path form (bbolt:path) is left out: it
// has no user-info, and a path is shown as written.
var secretSchemes = []string{
	"redis://", "rediss://", "redis+cluster://", "rediss+cluster://", "redis+sentinel://", "rediss+sentinel://",
	"memcache://", "memcached://", "bbolt://", "REDIS://", "ftp://",
	"redis:", "rediss:", "redis+cluster:", "redis+sentinel:", "memcache:", "redis:/", "",
}

// FuzzSecretNeverShown builds a URL scheme + user ":" password "@" rest
// from arbitrary parts and parses it: the password, as written or
// percent-decoded, must show in none of Redact, String and the error of
// Parse, whatever bytes any part holds. (A password of fewer than three
// bytes, or one that the other parts contain anyway, proves nothing and
// is skipped.)
func FuzzSecretNeverShown(f *testing.F) {
	for _, seed := range []struct{ user, pass, rest string }{
		{"", "Zm9v/YmFyS3CRET=", "127.0.0.1:1/0"},
		{"u", "S3C?RET", "h:6379/0"},
		{"u", "S3C#RET", "h1:7000,h2:7001"},
		{"u", "S3C@RET", "s1,s2/m/1?sentinel_password=x"},
		{"u", "S3%2FCRET", "h/0"},
		{"u", "S3%ZZCRET", "h/0"},
		{"u", "S3\x01CRET", "h"},
		{"u@corp", "S3CRET", "h?client_name=a@b"},
		{"", "S3CRET", ""},
		{"a/b", "S3CRET", "h"},
	} {
		for i := range secretSchemes {
			f.Add(uint8(i), seed.user, seed.pass, seed.rest)
		}
	}
	f.Fuzz(func(t *testing.T, scheme uint8, user, pass, rest string) {
		prefix := secretSchemes[int(scheme)%len(secretSchemes)]
		raw := prefix + user + ":" + pass + "@" + rest
		if strings.HasPrefix(strings.ToLower(raw), "bbolt:///") {
			return // a path, not a user-info
		}
		forms := []string{pass}
		if dec, err := url.PathUnescape(pass); err == nil {
			forms = append(forms, dec)
		}
		if dec, err := url.QueryUnescape(pass); err == nil {
			forms = append(forms, dec)
		}
		scaffold := prefix + user + ":" + "@" + rest + "xxxxx" + storeurl.ErrInvalidURL.Error()
		u, err := storeurl.Parse(raw)
		shown := []string{storeurl.Redact(raw)}
		if err != nil {
			shown = append(shown, err.Error())
		} else {
			shown = append(shown, u.String())
		}
		for _, p := range forms {
			quoted := strings.Trim(strconv.Quote(p), `"`)
			if len(p) < 3 || strings.Contains(scaffold, p) || strings.Contains(scaffold, quoted) {
				continue
			}
			for _, s := range shown {
				if strings.Contains(s, p) || strings.Contains(s, quoted) {
					t.Fatalf("Parse(%q): the password %q shows in %q", raw, p, s)
				}
			}
		}
	})
}
