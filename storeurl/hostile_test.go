package storeurl_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/storeurl"
)

// hostileURLs are store URLs whose user-info or options hold a password
// with bytes that trip naive parsers ('/', '?', '#', '@', '&', percent
// escapes, control bytes, spaces), in every scheme the package knows, and
// URLs that forget the '//'. secret is the password (or the part of it
// that must not show); "" for a URL without one.
var hostileURLs = []struct{ raw, secret string }{
	{"redis://:Zm9v/YmFyS3CRET=@127.0.0.1:1/0", "Zm9v/YmFyS3CRET="},
	{"redis://u:S3C/RET@h:6379/0", "S3C/RET"},
	{"redis://u:S3C?RET@h:6379/0", "S3C?RET"},
	{"redis://u:S3C#RET@h:6379/0", "S3C#RET"},
	{"redis://u:S3C@RET@h:6379/0", "S3C@RET"},
	{"redis://u:S3%2FCRET@h:6379/0", "S3/CRET"},
	{"redis://u:S3%40CRET@h/0", "S3@CRET"},
	{"redis://u:S3%ZZCRET@h/0", "S3%ZZCRET"},
	{"redis://u:S3\x01CRET@h/0", "S3\x01CRET"},
	{"redis://u:S3\nCRET@h/0", "S3\nCRET"},
	{"redis://u:S3 CRET@h/0", "S3 CRET"},
	{"redis://S3CRET/x@h/0", "S3CRET/x"},
	{"redis://u:S3CRET@", "S3CRET"},
	{"redis://u:S3CRET@h:notaport", "S3CRET"},
	{"redis://u:S3CRET@h/notadb", "S3CRET"},
	{"redis://u:S3CRET@h?bogus=1", "S3CRET"},
	{"redis://u:/S3CRET@h", "/S3CRET"},
	{"redis://u:S3CRET/@h", "S3CRET/"},
	{"redis://u:S3CRET?@h", "S3CRET?"},
	{"redis://u:S3CRET#@h", "S3CRET#"},
	{"rediss://u:S3C/RET@h:6380", "S3C/RET"},
	{"redis:u:S3CRET@10.1.2.3:7000", "S3CRET"},
	{"redis:/u:S3CRET@10.1.2.3:7000", "S3CRET"},
	{"redis:10.1.2.3:7000", ""},
	{"rediss:u:S3CRET@h", "S3CRET"},
	{"redis+cluster://u:S3C/RET@h1:7000,h2:7001", "S3C/RET"},
	{"redis+cluster://u:S3C?RET@h1,h2", "S3C?RET"},
	{"redis+cluster://u:S3C#RET@h1,h2", "S3C#RET"},
	{"redis+cluster:u:S3CRET@h1,h2", "S3CRET"},
	{"rediss+cluster://u:S3C/RET@h1,h2", "S3C/RET"},
	{"redis+cluster://u:S3CRET@h1,,h2", "S3CRET"},
	{"redis+sentinel://u:S3C/RET@s1,s2/m", "S3C/RET"},
	{"redis+sentinel://u:S3C#RET@s1,s2/m", "S3C#RET"},
	{"redis+sentinel://s1,s2/m?sentinel_password=S3C#RET", "S3C#RET"},
	{"redis+sentinel://s1,s2/m?sentinel_password=S3CRETX&y", "S3CRETX"},
	{"redis+sentinel:u:S3CRET@s1/m", "S3CRET"},
	{"redis+sentinel://u:S3CRET@s1,s2", "S3CRET"},
	{"memcache://u:S3CRET@h", "S3CRET"},
	{"memcache://u:S3C/RET@h", "S3C/RET"},
	{"memcache:u:S3CRET@h", "S3CRET"},
	{"bbolt://u:S3CRET@h/x", "S3CRET"},
	{"bbolt://u:S3C/RET@h/x", "S3C/RET"},
	{"S3CRET@h:6379", "S3CRET"},
	{"u:S3CRET@h:6379", "S3CRET"},
	{"redis://h/0?password=S3C#RET", "S3C#RET"},
	{"redis://h/0?pass%77ord=S3CRET", "S3CRET"},
	{"redis://h/0?PASSWORD=S3CRET", "S3CRET"},
	{"redis://h/0?client_name=a@b&password=S3CRET", "S3CRET"},
	{"redis://u:S3CRET@h1@h2/0", "S3CRET@h1"},
	{"ftp://u:S3C/RET@h", "S3C/RET"},
	{"REDIS://u:S3C/RET@h", "S3C/RET"},
	{"redis://u:pa?ss&password=S3CRET@h", "S3CRET"},
	{"redis://[::1:S3CRET@h", "S3CRET"},
	{"redis://u:S3CRET@h:6379/0?dial_timeout=bogus", "S3CRET"},
	{"redis://u:S3CRET@h:6379/0?password=OTHERPW", "OTHERPW"},
}

// TestHostileURLs parses every hostile URL: no password may show in the
// error, in String() or in Redact, and a URL that forgets the '//' after
// a network scheme must be an error (go-redis would read it as
// localhost:6379 with no password).
func TestHostileURLs(t *testing.T) {
	if len(hostileURLs) < 41 {
		t.Fatalf("%d hostile URLs; the issue counts 41", len(hostileURLs))
	}
	leaks, misparsed := 0, 0
	for _, tc := range hostileURLs {
		u, err := storeurl.Parse(tc.raw)
		var shown []string
		shown = append(shown, storeurl.Redact(tc.raw))
		if err != nil {
			shown = append(shown, err.Error())
		} else {
			shown = append(shown, u.String())
		}
		if tc.secret != "" {
			forms := []string{tc.secret}
			if dec, err := url.PathUnescape(tc.secret); err == nil {
				forms = append(forms, dec)
			}
			leaked := false
			for _, s := range shown {
				for _, f := range forms {
					if strings.Contains(s, f) {
						leaked = true
					}
				}
			}
			if leaked {
				leaks++
				t.Errorf("%q: the password shows: %q", tc.raw, shown)
			}
		}
		if err == nil && !strings.Contains(tc.raw, "//") {
			misparsed++
			t.Errorf("%q: parsed without '//' (as %+v)", tc.raw, u)
		}
	}
	t.Logf("%d hostile URLs: %d show a password, %d without '//' parse", len(hostileURLs), leaks, misparsed)
}
