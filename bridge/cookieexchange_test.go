// Tests of the authorize-cookie exchange (cookieexchange.go): POST
// /auth/cookie with a bearer token sets exactly that verified token as the
// JWT cookie.
package bridge

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// xchRequest builds a request to the exchange endpoint on host app.test.
func xchRequest(method, target, body, ctype string, hdr http.Header, cookies ...*http.Cookie) *http.Request {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, "https://app.test"+target, strings.NewReader(body))
		r.Header.Set("Content-Type", ctype)
	} else {
		r = httptest.NewRequest(method, "https://app.test"+target, nil)
	}
	for k, v := range hdr {
		r.Header[k] = v
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

// xchSetCookies returns the Set-Cookie headers of a response, parsed.
func xchSetCookies(rec *httptest.ResponseRecorder) []*http.Cookie {
	return rec.Result().Cookies()
}

// checkTokenCookie checks that the response sets exactly one cookie, the
// JWT cookie holding tok, with the attributes security.md asks for and
// Max-Age = the token's remaining lifetime.
func checkTokenCookie(t *testing.T, b *Bridge, rec *httptest.ResponseRecorder, tok string) {
	t.Helper()
	cs := xchSetCookies(rec)
	if len(cs) != 1 {
		t.Fatalf("%d Set-Cookie headers, want 1: %q", len(cs), rec.Header().Values("Set-Cookie"))
	}
	c := cs[0]
	if c.Name != b.cfg.CookieName {
		t.Errorf("cookie name %q, want %q", c.Name, b.cfg.CookieName)
	}
	if c.Value != tok {
		t.Errorf("cookie value is not exactly the bearer token")
	}
	if !c.HttpOnly || !c.Secure || c.SameSite != b.cfg.SameSite || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie attributes: HttpOnly %v Secure %v SameSite %v Path %q Domain %q (raw %q)",
			c.HttpOnly, c.Secure, c.SameSite, c.Path, c.Domain, rec.Header().Get("Set-Cookie"))
	}
	exp := tokenClaims(t, tok).ExpiresAt.Time
	remaining := time.Until(exp).Seconds()
	if math.Abs(float64(c.MaxAge)-remaining) > 1 {
		t.Errorf("Max-Age %d, remaining lifetime %.1fs", c.MaxAge, remaining)
	}
	if c.MaxAge <= 0 || float64(c.MaxAge) > math.Ceil(remaining) {
		t.Errorf("Max-Age %d outlives the token (%.1fs left)", c.MaxAge, remaining)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
}

func TestCookieExchange(t *testing.T) {
	ec := idpECKey(t, 0, "ec-1")
	idp := newFakeIdP(t, ec)
	ti := idpTrusted(idp, func(ti *TrustedIssuer) { ti.RefreshInterval = time.Hour })
	b := newTestBridge(t, func(c *Config) { c.TrustedIssuers = []TrustedIssuer{ti} })
	goRun(t, b)
	waitIdPAccepted(t, b, ec, 3*time.Second)
	h := b.CookieExchangeHandler()

	valid := mintTestToken(t, b, "alice", nil)
	short := mintTestToken(t, b, "alice", func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(90 * time.Second)) })
	idpTok := idpToken(t, ec, nil)
	forged := mintTestTokenWith(t, newTestKey(t), b, "alice", nil)
	expired := mintTestToken(t, b, "alice", func(c *Claims) {
		c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute))
	})
	// Past exp but within the leeway: it verifies, yet no cookie can
	// carry it.
	withinLeeway := mintTestToken(t, b, "alice", func(c *Claims) {
		c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-5 * time.Second))
	})
	wrongAud := mintTestToken(t, b, "alice", func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })
	revoked := mintTestToken(t, b, "alice", func(c *Claims) { c.ID = "xch-revoked" })
	b.Deny(Revocation{JTI: "xch-revoked", Until: time.Now().Add(time.Hour)})
	form := url.Values{"id_token": {valid}, "access_token": {valid}, "token": {valid}}.Encode()
	jsonBody, _ := json.Marshal(map[string]string{"id_token": valid, "access_token": valid, "token": valid})

	const (
		set     = "set"
		cleared = "cleared"
		none    = "none"
	)
	cases := []struct {
		name    string
		method  string
		target  string
		body    string
		ctype   string
		hdr     http.Header
		cookies []*http.Cookie
		status  int
		cookie  string // set (to tok), cleared or none
		tok     string // the token the cookie must hold
		reason  string // of a refusal
	}{
		{name: "bearer", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(valid), status: 204, cookie: set, tok: valid},
		{name: "bearer, lower-case scheme", method: "POST", target: "/auth/cookie", hdr: http.Header{"Authorization": {"bearer " + valid}}, status: 204, cookie: set, tok: valid},
		{name: "bearer, same-origin fetch", method: "POST", target: "/auth/cookie",
			hdr: hdrWith(webtest.Bearer(valid), "Sec-Fetch-Site", "same-origin"), status: 204, cookie: set, tok: valid},
		{name: "bearer, same Origin", method: "POST", target: "/auth/cookie",
			hdr: hdrWith(webtest.Bearer(valid), "Origin", "https://app.test"), status: 204, cookie: set, tok: valid},
		{name: "Max-Age follows a short token", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(short), status: 204, cookie: set, tok: short},
		{name: "IdP token", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(idpTok), status: 204, cookie: set, tok: idpTok},
		{name: "bearer replaces another JWT cookie", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(short),
			cookies: []*http.Cookie{{Name: DefaultCookieName, Value: valid}}, status: 204, cookie: set, tok: short},

		{name: "token in a form body", method: "POST", target: "/auth/cookie", body: form, ctype: "application/x-www-form-urlencoded",
			status: 401, cookie: none, reason: "no_credentials"},
		{name: "token in a JSON body", method: "POST", target: "/auth/cookie", body: string(jsonBody), ctype: "application/json",
			status: 401, cookie: none, reason: "no_credentials"},
		{name: "token in the query", method: "POST", target: "/auth/cookie?" + form, status: 401, cookie: none, reason: "no_credentials"},
		{name: "token only in the JWT cookie", method: "POST", target: "/auth/cookie",
			cookies: []*http.Cookie{{Name: DefaultCookieName, Value: valid}}, status: 401, cookie: none, reason: "no_credentials"},
		{name: "Basic credentials", method: "POST", target: "/auth/cookie", hdr: http.Header{"Authorization": {"Basic YWxpY2U6cHc="}},
			status: 401, cookie: none, reason: "no_credentials"},
		{name: "empty bearer", method: "POST", target: "/auth/cookie", hdr: http.Header{"Authorization": {"Bearer "}},
			status: 401, cookie: none, reason: "no_credentials"},
		{name: "token scheme", method: "POST", target: "/auth/cookie", hdr: http.Header{"Authorization": {"Token " + valid}},
			status: 401, cookie: none, reason: "no_credentials"},
		{name: "forged", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(forged), status: 401, cookie: none, reason: "bearer_invalid"},
		{name: "garbage", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer("not.a.jwt"), status: 401, cookie: none, reason: "bearer_invalid"},
		{name: "wrong audience", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(wrongAud), status: 401, cookie: none, reason: "bearer_invalid"},
		{name: "expired", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(expired), status: 401, cookie: none, reason: "bearer_expired"},
		{name: "expired within the leeway", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(withinLeeway), status: 401, cookie: none, reason: "bearer_expired"},
		{name: "revoked", method: "POST", target: "/auth/cookie", hdr: webtest.Bearer(revoked), status: 401, cookie: none, reason: "bearer_revoked"},

		{name: "cross-site POST", method: "POST", target: "/auth/cookie", hdr: hdrWith(webtest.Bearer(valid), "Sec-Fetch-Site", "cross-site"),
			status: 403, cookie: none, reason: "cross_origin"},
		{name: "same-site POST from a sibling", method: "POST", target: "/auth/cookie", hdr: hdrWith(webtest.Bearer(valid), "Sec-Fetch-Site", "same-site"),
			status: 403, cookie: none, reason: "cross_origin"},
		{name: "POST from another Origin", method: "POST", target: "/auth/cookie", hdr: hdrWith(webtest.Bearer(valid), "Origin", "https://evil.example"),
			status: 403, cookie: none, reason: "cross_origin"},

		{name: "GET", method: "GET", target: "/auth/cookie", hdr: webtest.Bearer(valid), status: 405, cookie: none},
		{name: "GET with the token in the query", method: "GET", target: "/auth/cookie?" + form, status: 405, cookie: none},
		{name: "HEAD", method: "HEAD", target: "/auth/cookie", hdr: webtest.Bearer(valid), status: 405, cookie: none},
		{name: "PUT", method: "PUT", target: "/auth/cookie", hdr: webtest.Bearer(valid), status: 405, cookie: none},
		{name: "PATCH", method: "PATCH", target: "/auth/cookie", hdr: webtest.Bearer(valid), status: 405, cookie: none},
		{name: "OPTIONS", method: "OPTIONS", target: "/auth/cookie", hdr: webtest.Bearer(valid), status: 405, cookie: none},

		{name: "DELETE", method: "DELETE", target: "/auth/cookie", cookies: []*http.Cookie{{Name: DefaultCookieName, Value: valid}},
			status: 204, cookie: cleared},
		{name: "DELETE without a cookie", method: "DELETE", target: "/auth/cookie", status: 204, cookie: cleared},
		{name: "cross-site DELETE", method: "DELETE", target: "/auth/cookie", hdr: http.Header{"Sec-Fetch-Site": {"cross-site"}},
			cookies: []*http.Cookie{{Name: DefaultCookieName, Value: valid}}, status: 403, cookie: none, reason: "cross_origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, xchRequest(tc.method, tc.target, tc.body, tc.ctype, tc.hdr, tc.cookies...))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, tc.status, rec.Body)
			}
			switch tc.cookie {
			case set:
				checkTokenCookie(t, b, rec, tc.tok)
				if rec.Body.Len() != 0 {
					t.Errorf("body %q, want none", rec.Body)
				}
			case cleared:
				cs := xchSetCookies(rec)
				if len(cs) != 1 || cs[0].Name != DefaultCookieName || cs[0].MaxAge >= 0 || cs[0].Value != "" || cs[0].Path != "/" {
					t.Errorf("want the JWT cookie cleared with Path=/, got %q", rec.Header().Values("Set-Cookie"))
				}
				if got := rec.Header().Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control %q", got)
				}
			case none:
				if sc := rec.Header().Values("Set-Cookie"); len(sc) != 0 {
					t.Errorf("Set-Cookie %q, want none", sc)
				}
			}
			if tc.status == 405 {
				if got := rec.Header().Get("Allow"); got != "POST, DELETE" {
					t.Errorf("Allow %q, want \"POST, DELETE\"", got)
				}
			}
			if tc.reason != "" {
				var body struct{ Reason string }
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				if body.Reason != tc.reason {
					t.Errorf("reason %q, want %q (body %q)", body.Reason, tc.reason, rec.Body)
				}
				if strings.Contains(rec.Body.String(), valid) {
					t.Error("the refusal echoes the token")
				}
			}
			if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	webtest.CheckNoSecrets(t, logsOf(b).String(), valid, short, idpTok, forged, revoked)
}

func hdrWith(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Set(k, v)
	return h
}

// TestCookieExchangeCookieSettings: the cookie follows the configured name
// and SameSite; the dev switch drops Secure.
func TestCookieExchangeCookieSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"__Host- name, Strict", func(c *Config) { c.CookieName = "__Host-id"; c.SameSite = http.SameSiteStrictMode }},
		{"insecure dev cookies", func(c *Config) { c.InsecureDevCookies = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBridge(t, tc.mod)
			tok := mintTestToken(t, b, "alice", nil)
			rec := httptest.NewRecorder()
			b.CookieExchangeHandler().ServeHTTP(rec, xchRequest("POST", "/auth/cookie", "", "", webtest.Bearer(tok)))
			if rec.Code != 204 {
				t.Fatalf("status %d", rec.Code)
			}
			cs := xchSetCookies(rec)
			if len(cs) != 1 {
				t.Fatalf("cookies %q", rec.Header().Values("Set-Cookie"))
			}
			c := cs[0]
			if c.Name != b.cfg.CookieName || c.Value != tok || c.SameSite != b.cfg.SameSite || c.Secure == b.cfg.InsecureDevCookies || !c.HttpOnly || c.Path != "/" {
				t.Errorf("cookie %q", rec.Header().Get("Set-Cookie"))
			}
		})
	}
}

// TestCookieExchangeEndToEnd: a browser-like client (cookie jar, TLS)
// exchanges its bearer token for the cookie, is then authenticated by the
// cookie alone on a jwt route, and DELETE logs the cookie out.
func TestCookieExchangeEndToEnd(t *testing.T) {
	b := newTestBridge(t, func(c *Config) { c.Routes = testRoutes })
	router := newTestRouter(nil)
	router.Handle("/auth/cookie", b.CookieExchangeHandler())
	router.Use(b.Middleware)
	ts := httptest.NewTLSServer(router)
	defer ts.Close()
	c := webtest.NewJarClient(t, ts)
	tok := mintTestToken(t, b, "alice", nil)

	if r := webtest.Do(t, c, "GET", ts.URL+"/jwt", nil); r.StatusCode != 401 {
		t.Fatalf("before the exchange: %d", r.StatusCode)
	}
	r := webtest.Do(t, c, "POST", ts.URL+"/auth/cookie", webtest.Bearer(tok))
	if r.StatusCode != 204 {
		t.Fatalf("exchange: %d %s", r.StatusCode, r.Body)
	}
	if ck := r.Cookie(DefaultCookieName); ck == nil || ck.Value != tok {
		t.Fatalf("exchange set %q", r.Header.Values("Set-Cookie"))
	}
	r = webtest.Do(t, c, "GET", ts.URL+"/jwt", nil)
	if r.StatusCode != 200 {
		t.Fatalf("with the cookie: %d %s", r.StatusCode, r.Body)
	}
	if id := identityOf(t, r); id.Subject != "alice" || id.Source != "jwt_cookie" {
		t.Errorf("identity %+v", id)
	}
	// A cross-site POST that rides on the cookie is refused.
	r = webtest.Do(t, c, "POST", ts.URL+"/jwt", http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if r.StatusCode != 403 {
		t.Errorf("cross-site POST with the cookie: %d", r.StatusCode)
	}
	// A cross-site exchange is refused and leaves the cookie.
	other := mintTestToken(t, b, "mallory", nil)
	r = webtest.Do(t, c, "POST", ts.URL+"/auth/cookie", hdrWith(webtest.Bearer(other), "Sec-Fetch-Site", "cross-site"))
	if r.StatusCode != 403 || r.Cookie(DefaultCookieName) != nil {
		t.Errorf("cross-site exchange: %d, Set-Cookie %q", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	if id := identityOf(t, webtest.Do(t, c, "GET", ts.URL+"/jwt", nil)); id.Subject != "alice" {
		t.Errorf("after the cross-site exchange, subject %q", id.Subject)
	}
	r = webtest.Do(t, c, "DELETE", ts.URL+"/auth/cookie", nil)
	if r.StatusCode != 204 {
		t.Fatalf("DELETE: %d", r.StatusCode)
	}
	if r := webtest.Do(t, c, "GET", ts.URL+"/jwt", nil); r.StatusCode != 401 {
		t.Errorf("after DELETE: %d", r.StatusCode)
	}
}
