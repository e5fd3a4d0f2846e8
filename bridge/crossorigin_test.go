package bridge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// TestTrustedOrigin replays issue 14's cross-origin frontend: the app's
// own frontend on another origin posts with the session cookie. With its
// origin trusted on Config.CrossOrigin it passes; any other origin is
// still refused 403 cross_origin; a bearer request is never CSRF-checked.
func TestTrustedOrigin(t *testing.T) {
	const frontend = "https://app.example.com"
	e := newTestEnv(t, func(_ *testEnv, c *Config) {
		c.CrossOrigin = http.NewCrossOriginProtection()
		if err := c.CrossOrigin.AddTrustedOrigin(frontend); err != nil {
			t.Fatal(err)
		}
	})
	sess, _ := e.session(t, testUser("1"))
	tok := e.token(t, "1", nil)
	for _, tc := range []struct {
		name, origin string
		bearer       bool
		want         int
	}{
		{"the app's frontend", frontend, false, http.StatusOK},
		{"another site", "https://evil.example", false, http.StatusForbidden},
		{"another site with a bearer token", "https://evil.example", true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{"Origin": {tc.origin}, "Sec-Fetch-Site": {"cross-site"}}
			var cookies []*http.Cookie
			if tc.bearer {
				hdr.Set("Authorization", "Bearer "+tok)
			} else {
				cookies = append(cookies, sess)
			}
			resp := webtest.Do(t, e.ts.Client(), http.MethodPost, e.ts.URL+"/dual", hdr, cookies...)
			if resp.StatusCode != tc.want {
				t.Errorf("POST from %s: %d, want %d (%s)", tc.origin, resp.StatusCode, tc.want, resp.Body)
			}
		})
	}
	wantReasons(t, e.b, "/dual", map[Reason]uint64{ReasonCrossOrigin: 1})
}

// TestCookieDomain: an app whose session cookie is shared with its
// subdomains (Domain=example.com) gets the JWT cookie with the same
// Domain, under a __Secure- name (a __Host- cookie cannot have one), set
// and cleared alike; a __Host- name with a Domain is refused at New.
func TestCookieDomain(t *testing.T) {
	e := newTestEnv(t, func(_ *testEnv, c *Config) { c.CookieDomain = "example.com"; c.SameSite = http.SameSiteStrictMode })
	if got := e.b.cfg.CookieName; got != "__Secure-id_token" {
		t.Errorf("default cookie name with a Domain: %q, want __Secure-id_token", got)
	}
	sess, _ := e.session(t, testUser("1"))
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/dual", nil, sess)
	set := resp.Header.Values("Set-Cookie")
	if len(set) != 1 || !strings.Contains(set[0], "Domain=example.com") || !strings.Contains(set[0], "SameSite=Strict") || !strings.Contains(set[0], "Secure") {
		t.Fatalf("conversion Set-Cookie %q, want Domain=example.com, Secure, SameSite=Strict", set)
	}
	w := httptest.NewRecorder()
	e.b.ClearTokenCookie(w)
	if c := w.Header().Get("Set-Cookie"); !strings.Contains(c, "Domain=example.com") || !strings.Contains(c, "Max-Age=0") {
		t.Errorf("clearing Set-Cookie %q, want the same Domain", c)
	}
	_, err := New(Config{SigningKey: newTestKey(t), Issuer: testIssuer, Audience: testAudience, CookieDomain: "example.com", CookieName: "__Host-x"})
	if err == nil || !strings.Contains(err.Error(), "__Host-") {
		t.Errorf("__Host- cookie with a Domain: %v, want an error", err)
	}
}
