package bridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// cred is a kind of credential a test request carries.
type cred int

const (
	credNone           cred = iota
	credSession             // a live legacy session
	credJWTCookie           // a valid JWT cookie
	credBearer              // a valid bearer token
	credBadBearer           // a bearer token signed by an unknown key
	credUnknownSession      // a valid session cookie whose Redis key is gone
	credBadSession          // a session cookie with a broken MAC
	credEmptyBearer         // "Authorization: Bearer " with nothing after it
)

func (c cred) String() string {
	return [...]string{"none", "session", "jwt_cookie", "bearer", "bad_bearer", "unknown_session", "bad_session", "empty_bearer"}[c]
}

// tamper changes one character in the middle of a cookie value.
func tamper(v string) string {
	i := len(v) / 2
	ch := byte('A')
	if v[i] == 'A' {
		ch = 'B'
	}
	return v[:i] + string(ch) + v[i+1:]
}

// credRequest returns the headers and cookies of a request carrying c for
// user "1".
func credRequest(t *testing.T, e *testEnv, c cred) (http.Header, []*http.Cookie) {
	t.Helper()
	switch c {
	case credSession:
		ck, _ := e.session(t, testUser("1"))
		return nil, []*http.Cookie{ck}
	case credJWTCookie:
		return nil, []*http.Cookie{e.jwtCookie(e.token(t, "1", nil))}
	case credBearer:
		return bearer(e.token(t, "1", nil)), nil
	case credBadBearer:
		other := newTestBridge(t, nil)
		tok := mintTestToken(t, other, "1", nil)
		e.secret(tok)
		return bearer(tok), nil
	case credUnknownSession:
		ck, id := e.session(t, testUser("1"))
		if err := e.store.Delete(context.Background(), id); err != nil {
			t.Fatalf("delete session: %v", err)
		}
		return nil, []*http.Cookie{ck}
	case credBadSession:
		ck, _ := e.session(t, testUser("1"))
		ck.Value = tamper(ck.Value)
		e.secret(ck.Value)
		return nil, []*http.Cookie{ck}
	case credEmptyBearer:
		return http.Header{"Authorization": {"Bearer "}}, nil
	}
	return nil, nil
}

func TestModes(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		route   string
		cred    cred
		status  int
		source  Source
		reasons map[Reason]uint64
		www     string // WWW-Authenticate
		convert bool
	}{
		// legacy observes: never refuses, never converts.
		{route: "/legacy", cred: credNone, status: 200, source: SourceAnonymous},
		{route: "/legacy", cred: credEmptyBearer, status: 200, source: SourceAnonymous},
		{route: "/legacy", cred: credSession, status: 200, source: SourceSession},
		{route: "/legacy", cred: credJWTCookie, status: 200, source: SourceJWTCookie},
		{route: "/legacy", cred: credBearer, status: 200, source: SourceJWTBearer},
		{route: "/legacy", cred: credBadBearer, status: 200, source: SourceRejected, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}},
		{route: "/legacy", cred: credUnknownSession, status: 200, source: SourceRejected, reasons: map[Reason]uint64{ReasonSessionUnknown: 1}},
		{route: "/legacy", cred: credBadSession, status: 200, source: SourceRejected, reasons: map[Reason]uint64{ReasonSessionInvalid: 1}},
		// dual accepts a JWT or a session.
		{route: "/dual", cred: credNone, status: 401, source: SourceAnonymous, reasons: map[Reason]uint64{ReasonNoCredentials: 1}, www: "Bearer"},
		{route: "/dual", cred: credEmptyBearer, status: 401, source: SourceAnonymous, reasons: map[Reason]uint64{ReasonNoCredentials: 1}, www: "Bearer"},
		{route: "/dual", cred: credSession, status: 200, source: SourceSession, convert: true},
		{route: "/dual", cred: credJWTCookie, status: 200, source: SourceJWTCookie},
		{route: "/dual", cred: credBearer, status: 200, source: SourceJWTBearer},
		{route: "/dual", cred: credBadBearer, status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`},
		{route: "/dual", cred: credUnknownSession, status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonSessionUnknown: 1}, www: "Bearer"},
		{route: "/dual", cred: credBadSession, status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonSessionInvalid: 1}, www: "Bearer"},
		// jwt accepts JWTs only.
		{route: "/jwt", cred: credNone, status: 401, source: SourceAnonymous, reasons: map[Reason]uint64{ReasonNoCredentials: 1}, www: "Bearer"},
		{route: "/jwt", cred: credSession, status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonSessionOnJWT: 1}, www: "Bearer"},
		{route: "/jwt", cred: credJWTCookie, status: 200, source: SourceJWTCookie},
		{route: "/jwt", cred: credBearer, status: 200, source: SourceJWTBearer},
		{route: "/jwt", cred: credBadBearer, status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`},
		{route: "/jwt", cred: credUnknownSession, status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonSessionOnJWT: 1}, www: "Bearer"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.route, "/")+"/"+tt.cred.String(), func(t *testing.T) {
			t.Parallel()
			e := newTestEnvOn(t, srv, nil)
			hdr, cookies := credRequest(t, e, tt.cred)
			resp := do(t, e.ts.Client(), http.MethodGet, e.url(tt.route), hdr, cookies...)

			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (body %s)", resp.StatusCode, tt.status, resp.Body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.www {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.www)
			}
			if tt.status == 200 {
				id := resp.identity(t)
				authed := tt.source != SourceAnonymous && tt.source != SourceRejected
				if id.Has != authed {
					t.Errorf("identity present: got %v, want %v", id.Has, authed)
				}
				if authed && (id.Subject != "1" || id.Source != tt.source.String()) {
					t.Errorf("identity: got %s/%s, want 1/%s", id.Subject, id.Source, tt.source)
				}
			} else {
				var want Reason
				for r := range tt.reasons {
					want = r
				}
				if got := resp.reason(); got != want.String() {
					t.Errorf("body reason: got %q, want %q", got, want)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type: got %q, want application/json", ct)
				}
			}
			if got := resp.cookie("id_token") != nil; got != tt.convert {
				t.Errorf("id_token set: got %v, want %v", got, tt.convert)
			}
			mode := testRoutes[tt.route]
			wantRequests(t, e.b, tt.route, map[Mode]map[Source]uint64{mode: {tt.source: 1}})
			wantReasons(t, e.b, tt.route, tt.reasons)
			wantConv := uint64(0)
			if tt.convert {
				wantConv = 1
			}
			if got := routeCounts(t, e.b, tt.route).Conversions; got != wantConv {
				t.Errorf("conversions: got %v, want %v", got, wantConv)
			}
			if got := totalRequests(e.b); got != 1 {
				t.Errorf("requests counted: got %v, want 1", got)
			}
		})
	}
}

// TestCombinedCredentials: requests carrying more than one credential.
func TestCombinedCredentials(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name    string
		route   string
		creds   []cred
		expired bool // add an expired bearer instead
		status  int
		source  Source
		reasons map[Reason]uint64
		www     string
		noRedis bool
	}{
		{name: "legacy bad bearer + session", route: "/legacy", creds: []cred{credBadBearer, credSession},
			status: 200, source: SourceSession, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}},
		{name: "legacy bad bearer + cookie", route: "/legacy", creds: []cred{credBadBearer, credJWTCookie},
			status: 200, source: SourceJWTCookie, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}},
		{name: "dual bad bearer + cookie", route: "/dual", creds: []cred{credBadBearer, credJWTCookie},
			status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`, noRedis: true},
		{name: "dual bad bearer + session", route: "/dual", creds: []cred{credBadBearer, credSession},
			status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`, noRedis: true},
		{name: "dual expired bearer", route: "/dual", expired: true,
			status: 401, source: SourceRejected, reasons: map[Reason]uint64{ReasonBearerExpired: 1}, www: `Bearer error="invalid_token"`, noRedis: true},
		{name: "jwt cookie + session", route: "/jwt", creds: []cred{credJWTCookie, credSession},
			status: 200, source: SourceJWTCookie, noRedis: true},
		{name: "dual bearer + session", route: "/dual", creds: []cred{credBearer, credSession},
			status: 200, source: SourceJWTBearer, noRedis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnvOn(t, srv, nil)
			hdr := http.Header{}
			var cookies []*http.Cookie
			for _, c := range tt.creds {
				h, cs := credRequest(t, e, c)
				for k, v := range h {
					hdr[k] = v
				}
				cookies = append(cookies, cs...)
			}
			if tt.expired {
				hdr = bearer(expiredToken(t, e))
			}
			resetRedisStats(t, e.srv)
			resp := do(t, e.ts.Client(), http.MethodGet, e.url(tt.route), hdr, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.www {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.www)
			}
			if tt.status == 200 {
				if got := resp.identity(t).Source; got != tt.source.String() {
					t.Errorf("source: got %v, want %v", got, tt.source)
				}
			}
			wantRequests(t, e.b, tt.route, map[Mode]map[Source]uint64{testRoutes[tt.route]: {tt.source: 1}})
			wantReasons(t, e.b, tt.route, tt.reasons)
			if got := redisCalls(t, e.srv); tt.noRedis && len(got) != 0 {
				t.Errorf("Redis commands: got %v, want none", got)
			}
		})
	}
}

// TestSetMode switches a route's mode at run time: each request is counted
// under the mode it was served in.
func TestSetMode(t *testing.T) {
	e := newTestEnv(t, nil)
	ck, _ := e.session(t, testUser("1"))
	c := e.ts.Client()

	steps := []struct {
		set    func()
		status int
	}{
		{func() {}, 200},
		{func() { _ = e.b.SetMode("/dual", JWT) }, 401},
		{func() { e.b.ResetMode("/dual") }, 200},
		{func() { _ = e.b.SetMode("/dual", Legacy) }, 200},
	}
	for i, s := range steps {
		s.set()
		if got := do(t, c, http.MethodGet, e.url("/dual"), nil, ck).StatusCode; got != s.status {
			t.Errorf("step %d: status: got %v, want %v", i, got, s.status)
		}
	}
	wantRequests(t, e.b, "/dual", map[Mode]map[Source]uint64{
		Dual:   {SourceSession: 2},
		JWT:    {SourceRejected: 1},
		Legacy: {SourceSession: 1},
	})
	wantReasons(t, e.b, "/dual", map[Reason]uint64{ReasonSessionOnJWT: 1})
	if got := routeCounts(t, e.b, "/dual").Conversions; got != 2 {
		t.Errorf("conversions: got %v, want 2", got)
	}
	if err := e.b.SetMode("/dual", Mode(9)); err == nil {
		t.Errorf("SetMode(invalid): got nil error, want one")
	}
}

// TestCountedOnceConcurrently sends many mixed requests at once: each is
// counted exactly once.
func TestCountedOnceConcurrently(t *testing.T) {
	// No Router walked: routes are added on first sight, concurrently.
	e := newTestEnv(t, func(_ *testEnv, c *Config) { c.Router = nil })
	creds := []cred{credNone, credSession, credJWTCookie, credBearer, credBadBearer, credUnknownSession, credBadSession}
	type req struct {
		hdr     http.Header
		cookies []*http.Cookie
	}
	reqs := make([]req, len(creds))
	for i, c := range creds {
		reqs[i].hdr, reqs[i].cookies = credRequest(t, e, c)
	}
	routes := []string{"/legacy", "/dual", "/jwt", "/dual/7"}
	const workers, each = 4, 21
	tr := e.ts.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = workers
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := reqs[(w+i)%len(reqs)]
				url := e.url(routes[i%len(routes)])
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				for k, v := range r.hdr {
					req.Header[k] = v
				}
				for _, ck := range r.cookies {
					req.AddCookie(ck)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Errorf("GET %s: %v", url, err)
					continue
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if got, want := totalRequests(e.b), uint64(workers*each); got != want {
		t.Errorf("requests counted: got %v, want %v", got, want)
	}
}

func TestConversionCookie(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name     string
		mod      func(*testEnv, *Config)
		secure   bool
		sameSite http.SameSite
	}{
		{name: "default", secure: true, sameSite: http.SameSiteLaxMode},
		{name: "insecure dev", mod: func(_ *testEnv, c *Config) { c.InsecureDevCookies = true }, secure: false, sameSite: http.SameSiteLaxMode},
		{name: "strict", mod: func(_ *testEnv, c *Config) { c.SameSite = http.SameSiteStrictMode }, secure: true, sameSite: http.SameSiteStrictMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnvOn(t, srv, tt.mod)
			ck, id := e.session(t, testUser("1"))
			resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200", resp.StatusCode)
			}
			if got := resp.identity(t); got.Source != "session" || got.Subject != "1" || got.Name != "user1" {
				t.Errorf("identity: got %+v, want session for 1/user1", got)
			}
			var set []string
			for _, h := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(h, "id_token=") {
					set = append(set, h)
				}
			}
			if len(set) != 1 {
				t.Fatalf("id_token Set-Cookie headers: got %v, want 1", len(set))
			}
			c := resp.cookie("id_token")
			e.secret(c.Value)
			if !c.HttpOnly || c.Secure != tt.secure || c.SameSite != tt.sameSite || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie attributes: got %q, want HttpOnly, Secure=%v, SameSite=%v, Path=/, no Domain", set[0], tt.secure, tt.sameSite)
			}
			if ttl := int(DefaultTokenTTL / time.Second); c.MaxAge <= 0 || c.MaxAge > ttl {
				t.Errorf("Max-Age: got %v, want 1..%v", c.MaxAge, ttl)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
			claims := tokenClaims(t, c.Value)
			if claims.Subject != "1" || claims.Name != "user1" || len(claims.Roles) != 1 || claims.Roles[0] != "user" {
				t.Errorf("claims: got sub %q name %q roles %v, want 1, user1, [user]", claims.Subject, claims.Name, claims.Roles)
			}
			if claims.Issuer != testIssuer || len(claims.Audience) != 1 || claims.Audience[0] != testAudience {
				t.Errorf("iss/aud: got %q/%v, want %q/[%s]", claims.Issuer, claims.Audience, testIssuer, testAudience)
			}
			if claims.SID == "" || claims.SID == id || strings.Contains(c.Value, id) {
				t.Errorf("sid: got %q, want a hash that is not the raw session ID", claims.SID)
			}
			if got, want := claims.SID, e.b.sids.sid(id); got != want {
				t.Errorf("sid: got %q, want %q", got, want)
			}
			if got := claims.ExpiresAt.Sub(claims.IssuedAt.Time); got != DefaultTokenTTL {
				t.Errorf("exp-iat: got %v, want %v", got, DefaultTokenTTL)
			}
			if got := int(claims.ExpiresAt.Sub(e.clock.Now()) / time.Second); c.MaxAge > got {
				t.Errorf("Max-Age: got %v, want at most exp-now = %v", c.MaxAge, got)
			}
		})
	}
}

// TestConversionFlow converts a session with a browser-like client: the
// next request is authenticated by the JWT cookie; each conversion mints
// a new jti.
func TestConversionFlow(t *testing.T) {
	e := newTestEnv(t, nil)
	ck, _ := e.session(t, testUser("1"))
	jar := newJarClient(t, e.ts)
	jar.Jar.SetCookies(mustURL(t, e.ts.URL), []*http.Cookie{ck})

	first := do(t, jar, http.MethodGet, e.url("/dual"), nil)
	if got := first.identity(t).Source; got != "session" {
		t.Fatalf("first request source: got %v, want session", got)
	}
	tok := first.cookie("id_token")
	if tok == nil {
		t.Fatalf("first request: no id_token set")
	}
	e.secret(tok.Value)
	for i := range 3 {
		resp := do(t, jar, http.MethodGet, e.url("/dual"), nil)
		if got := resp.identity(t).Source; got != "jwt_cookie" {
			t.Errorf("request %d source: got %v, want jwt_cookie", i+2, got)
		}
		if resp.cookie("id_token") != nil {
			t.Errorf("request %d: id_token set again", i+2)
		}
	}
	// The JWT cookie also opens the jwt route.
	if got := do(t, jar, http.MethodGet, e.url("/jwt"), nil).StatusCode; got != 200 {
		t.Errorf("/jwt status with the converted cookie: got %v, want 200", got)
	}
	wantRequests(t, e.b, "/dual", map[Mode]map[Source]uint64{Dual: {SourceSession: 1, SourceJWTCookie: 3}})
	if got := routeCounts(t, e.b, "/dual").Conversions; got != 1 {
		t.Errorf("conversions: got %v, want 1", got)
	}

	// Converting the same session again (a client without the cookie)
	// mints a new token with a new jti and the same sid.
	jtis := map[string]bool{tokenClaims(t, tok.Value).ID: true}
	sid := tokenClaims(t, tok.Value).SID
	for range 3 {
		c := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, ck).cookie("id_token")
		if c == nil {
			t.Fatalf("no id_token set")
		}
		e.secret(c.Value)
		claims := tokenClaims(t, c.Value)
		if jtis[claims.ID] {
			t.Errorf("jti %q reused", claims.ID)
		}
		jtis[claims.ID] = true
		if claims.SID != sid {
			t.Errorf("sid: got %q, want %q", claims.SID, sid)
		}
	}
	if got := routeCounts(t, e.b, "/dual").Conversions; got != 4 {
		t.Errorf("conversions: got %v, want 4", got)
	}
}

// TestConversionBoundedBySession: a token never outlives the session's
// remaining TTL when the source knows it.
func TestConversionBoundedBySession(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name       string
		sessionTTL int // seconds
		tokenTTL   time.Duration
		source     func(e *testEnv) (SessionSource, error)
		wantMax    int // Max-Age bound, seconds
	}{
		{name: "boj 5m", sessionTTL: 300, tokenTTL: 15 * time.Minute, wantMax: 300,
			source: func(e *testEnv) (SessionSource, error) {
				return BojSource(e.rdb, testSessionName, testKeyPairs()...)
			}},
		{name: "boj 30s", sessionTTL: 30, tokenTTL: 15 * time.Minute, wantMax: 30,
			source: func(e *testEnv) (SessionSource, error) {
				return BojSource(e.rdb, testSessionName, testKeyPairs()...)
			}},
		{name: "boj longer than token", sessionTTL: 3600, tokenTTL: 10 * time.Minute, wantMax: 600,
			source: func(e *testEnv) (SessionSource, error) {
				return BojSource(e.rdb, testSessionName, testKeyPairs()...)
			}},
		// StoreSource cannot see the TTL: the token lasts TokenTTL.
		{name: "store 5m", sessionTTL: 300, tokenTTL: 15 * time.Minute, wantMax: 900,
			source: func(e *testEnv) (SessionSource, error) { return StoreSource(e.store, testSessionName), nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnvOn(t, srv, func(e *testEnv, c *Config) {
				src, err := tt.source(e)
				if err != nil {
					t.Fatalf("source: %v", err)
				}
				c.Sessions = src
				c.TokenTTL = tt.tokenTTL
			})
			short := newTestStore(t, e.rdb, func(c *redisstore.Config) {
				c.Options = &sessions.Options{Path: "/", MaxAge: tt.sessionTTL, HttpOnly: true}
			})
			ck, id := saveSession(t, short, testUser("1"))
			e.secret(ck.Value, id)
			resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, ck)
			c := resp.cookie("id_token")
			if c == nil {
				t.Fatalf("no id_token set (status %v)", resp.StatusCode)
			}
			e.secret(c.Value)
			if c.MaxAge <= 0 || c.MaxAge > tt.wantMax || c.MaxAge < tt.wantMax-2 {
				t.Errorf("Max-Age: got %v, want %v (or a second or two less)", c.MaxAge, tt.wantMax)
			}
			claims := tokenClaims(t, c.Value)
			if got := int(claims.ExpiresAt.Sub(e.clock.Now()) / time.Second); got > tt.wantMax {
				t.Errorf("exp-now: got %vs, want at most %vs", got, tt.wantMax)
			}
		})
	}
}

// TestZeroRedisAfterConversion: once converted, a user's requests make no
// Redis call at all.
func TestZeroRedisAfterConversion(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name   string
		source func(e *testEnv) SessionSource
	}{
		{name: "store", source: func(e *testEnv) SessionSource { return StoreSource(e.store, testSessionName) }},
		{name: "boj", source: func(e *testEnv) SessionSource {
			s, _ := BojSource(e.rdb, testSessionName, testKeyPairs()...)
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnvOn(t, srv, func(e *testEnv, c *Config) { c.Sessions = tt.source(e) })
			ck, _ := e.session(t, testUser("1"))
			jar := newJarClient(t, e.ts)
			jar.Jar.SetCookies(mustURL(t, e.ts.URL), []*http.Cookie{ck})
			resetRedisStats(t, e.srv)
			first := do(t, jar, http.MethodGet, e.url("/dual"), nil)
			if c := first.cookie("id_token"); c == nil {
				t.Fatalf("not converted")
			} else {
				e.secret(c.Value)
			}
			if got := e.srv.CommandCalls("get"); got != 1 {
				t.Errorf("GETs of the converting request: got %v, want 1", got)
			}

			resetRedisStats(t, e.srv)
			const n = 24
			routes := []string{"/dual", "/jwt", "/dual/3", "/legacy"}
			for i := range n {
				resp := do(t, jar, http.MethodGet, e.url(routes[i%len(routes)]), nil)
				if resp.StatusCode != 200 || resp.identity(t).Source != "jwt_cookie" {
					t.Fatalf("request %d: got %v %s, want 200 from jwt_cookie", i, resp.StatusCode, resp.Body)
				}
			}
			if got := e.srv.CommandCalls("get"); got != 0 {
				t.Errorf("GET calls: got %v, want 0", got)
			}
			if got := e.srv.CommandCalls("pttl"); got != 0 {
				t.Errorf("PTTL calls: got %v, want 0", got)
			}
			if got := redisCalls(t, e.srv); len(got) != 0 {
				t.Errorf("Redis commands: got %v, want none", got)
			}
		})
	}
}

func TestRollout(t *testing.T) {
	e := newTestEnv(t, nil)
	const n = 200
	type sess struct {
		ck *http.Cookie
		id string
	}
	all := make([]sess, n)
	for i := range all {
		all[i].ck, all[i].id = e.session(t, testUser(fmt.Sprint(i)))
	}
	c := e.ts.Client()
	converted := func(s sess) bool {
		t.Helper()
		resp := do(t, c, http.MethodGet, e.url("/dual"), nil, s.ck)
		if resp.StatusCode != 200 || resp.identity(t).Source != "session" {
			t.Fatalf("got %v %s, want 200 from session", resp.StatusCode, resp.Body)
		}
		if ck := resp.cookie("id_token"); ck != nil {
			e.secret(ck.Value)
			return true
		}
		return false
	}

	if err := e.b.SetRolloutPercent(0); err != nil {
		t.Fatalf("SetRolloutPercent(0): %v", err)
	}
	for i, s := range all[:50] {
		if converted(s) {
			t.Fatalf("rollout 0: session %d converted", i)
		}
	}
	if got := routeCounts(t, e.b, "/dual").Conversions; got != 0 {
		t.Errorf("rollout 0: conversions: got %v, want 0", got)
	}

	in := map[int]map[int]bool{} // percent → session index → converted
	var total uint64
	for _, p := range []int{30, 50} {
		if err := e.b.SetRolloutPercent(p); err != nil {
			t.Fatalf("SetRolloutPercent(%d): %v", p, err)
		}
		in[p] = map[int]bool{}
		for i, s := range all {
			got := converted(s)
			if again := converted(s); again != got {
				t.Errorf("rollout %d: session %d flapped: %v then %v", p, i, got, again)
			}
			if want := e.b.sids.inRollout(s.id, p); got != want {
				t.Errorf("rollout %d: session %d converted: got %v, want %v", p, i, got, want)
			}
			if got {
				in[p][i] = true
				total += 2
			}
		}
	}
	if got := len(in[50]); got < n*35/100 || got > n*65/100 {
		t.Errorf("rollout 50: converted %v of %v, want 35%%..65%%", got, n)
	}
	if got := len(in[30]); got < n*15/100 || got > n*45/100 {
		t.Errorf("rollout 30: converted %v of %v, want 15%%..45%%", got, n)
	}
	for i := range in[30] {
		if !in[50][i] {
			t.Errorf("session %d converted at 30%% but not at 50%%", i)
		}
	}
	if got := routeCounts(t, e.b, "/dual").Conversions; got != total {
		t.Errorf("conversions: got %v, want %v", got, total)
	}

	if err := e.b.SetRolloutPercent(100); err != nil {
		t.Fatalf("SetRolloutPercent(100): %v", err)
	}
	for i, s := range all[:20] {
		if !converted(s) {
			t.Errorf("rollout 100: session %d not converted", i)
		}
	}
	for _, p := range []int{-1, 101} {
		if err := e.b.SetRolloutPercent(p); err == nil {
			t.Errorf("SetRolloutPercent(%d): got nil error, want one", p)
		}
	}
}

// TestSlidingRemint: a JWT cookie in its last quarter is re-minted while
// its session lives and cleared once the session is gone.
func TestSlidingRemint(t *testing.T) {
	e := newTestEnv(t, nil)
	ck, id := e.session(t, testUser("1"))
	jar := newJarClient(t, e.ts)
	jar.Jar.SetCookies(mustURL(t, e.ts.URL), []*http.Cookie{ck})

	first := do(t, jar, http.MethodGet, e.url("/dual"), nil).cookie("id_token")
	if first == nil {
		t.Fatalf("not converted")
	}
	e.secret(first.Value)
	firstExp := tokenClaims(t, first.Value).ExpiresAt.Time

	// Half-way: no re-mint.
	e.clock.Advance(5 * time.Minute)
	resp := do(t, jar, http.MethodGet, e.url("/dual"), nil)
	if got := resp.identity(t).Source; got != "jwt_cookie" {
		t.Errorf("at 5m: source: got %v, want jwt_cookie", got)
	}
	if c := resp.cookie("id_token"); c != nil {
		t.Errorf("at 5m: id_token re-set, want untouched")
	}

	// Last quarter (3m left of 15m): re-minted with a later exp.
	e.clock.Advance(7 * time.Minute)
	resp = do(t, jar, http.MethodGet, e.url("/dual"), nil)
	if got := resp.identity(t).Source; got != "jwt_cookie" {
		t.Errorf("at 12m: source: got %v, want jwt_cookie", got)
	}
	second := resp.cookie("id_token")
	if second == nil || second.MaxAge <= 0 {
		t.Fatalf("at 12m: id_token: got %v, want a new cookie", cookiesDesc(second))
	}
	e.secret(second.Value)
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("at 12m: Cache-Control: got %q, want no-store", got)
	}
	claims := tokenClaims(t, second.Value)
	if !claims.ExpiresAt.After(firstExp) {
		t.Errorf("at 12m: exp: got %v, want after %v", claims.ExpiresAt.Time, firstExp)
	}
	if claims.SID != e.b.sids.sid(id) {
		t.Errorf("at 12m: sid: got %q, want the session's", claims.SID)
	}
	// The jar now holds the new token and uses it.
	resp = do(t, jar, http.MethodGet, e.url("/dual"), nil)
	if resp.cookie("id_token") != nil {
		t.Errorf("after re-mint: id_token set again")
	}

	// The session is deleted (legacy logout): in the last quarter of the
	// new token, the cookie is cleared; the still valid token serves this
	// request.
	if err := e.store.Delete(context.Background(), id); err != nil {
		t.Fatalf("delete session: %v", err)
	}
	e.clock.Advance(12 * time.Minute)
	resp = do(t, jar, http.MethodGet, e.url("/dual"), nil)
	if resp.StatusCode != 200 || resp.identity(t).Source != "jwt_cookie" {
		t.Errorf("after logout: got %v %s, want 200 from jwt_cookie", resp.StatusCode, resp.Body)
	}
	if c := resp.cookie("id_token"); c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("after logout: id_token: got %v, want cleared (Max-Age<0)", cookiesDesc(c))
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("after logout: Cache-Control: got %q, want no-store", got)
	}
	// Next, the jar has no JWT and the session is unknown: 401.
	resp = do(t, jar, http.MethodGet, e.url("/dual"), nil)
	if resp.StatusCode != 401 || resp.reason() != "session_unknown" {
		t.Errorf("after clear: got %v %s, want 401 session_unknown", resp.StatusCode, resp.Body)
	}
}

// TestRemintStoreDown: a near-expiry JWT cookie whose session cannot be
// read (Redis hung) still serves the request, quickly, and is kept.
func TestRemintStoreDown(t *testing.T) {
	e := newTestEnv(t, nil)
	ck, id := e.session(t, testUser("1"))
	tok := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, ck).cookie("id_token")
	if tok == nil {
		t.Fatalf("not converted")
	}
	e.secret(tok.Value)
	e.clock.Advance(13 * time.Minute)
	e.srv.Pause()
	defer e.srv.Resume()
	start := time.Now()
	resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, e.jwtCookie(tok.Value), ck)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v, want under 2s", elapsed)
	}
	if resp.StatusCode != 200 || resp.identity(t).Source != "jwt_cookie" {
		t.Errorf("got %v %s, want 200 from jwt_cookie", resp.StatusCode, resp.Body)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("Set-Cookie headers: got %v, want none", len(got))
	}
	e.srv.Resume()
	if n, _ := e.rdb.Exists(context.Background(), "session_"+id).Result(); n != 1 {
		t.Errorf("session key: got %v, want it kept", n)
	}
}

// TestRemintOtherSession: a near-expiry token minted from another session
// than the request's, or from none, is not re-minted from it.
func TestRemintOtherSession(t *testing.T) {
	e := newTestEnv(t, nil)
	ckA, _ := e.session(t, testUser("1"))
	ckB, _ := e.session(t, testUser("1"))
	tokA := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, ckA).cookie("id_token")
	if tokA == nil {
		t.Fatalf("not converted")
	}
	e.secret(tokA.Value)
	e.clock.Advance(13 * time.Minute)
	resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, e.jwtCookie(tokA.Value), ckB)
	if resp.StatusCode != 200 || resp.identity(t).Source != "jwt_cookie" {
		t.Errorf("got %v %s, want 200 from jwt_cookie", resp.StatusCode, resp.Body)
	}
	if c := resp.cookie("id_token"); c != nil {
		t.Errorf("id_token: got %v, want untouched", cookiesDesc(c))
	}
	// A token not minted from a session (no sid) is not re-minted from
	// the request's session, nor cleared when that session is gone.
	plain := e.token(t, "alice", func(c *Claims) {
		c.IssuedAt = jwt.NewNumericDate(e.clock.Now().Add(-13 * time.Minute))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(e.clock.Now().Add(2 * time.Minute))
	})
	resp = do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, e.jwtCookie(plain), ckB)
	if resp.StatusCode != 200 || resp.identity(t).Subject != "alice" {
		t.Errorf("token without sid: got %v %s, want 200 for alice", resp.StatusCode, resp.Body)
	}
	if c := resp.cookie("id_token"); c != nil {
		t.Errorf("token without sid: id_token: got %v, want untouched", cookiesDesc(c))
	}
	gone, _ := e.session(t, testUser("9"))
	if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	resp = do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, e.jwtCookie(plain), gone)
	if c := resp.cookie("id_token"); c != nil || resp.StatusCode != 200 {
		t.Errorf("token without sid, session gone: got %v, id_token %v; want 200, untouched", resp.StatusCode, cookiesDesc(c))
	}

	// Without a session cookie, nothing is read and nothing re-minted.
	resetRedisStats(t, e.srv)
	resp = do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, e.jwtCookie(tokA.Value))
	if c := resp.cookie("id_token"); c != nil || resp.StatusCode != 200 {
		t.Errorf("without session: got %v, id_token %v; want 200, untouched", resp.StatusCode, cookiesDesc(c))
	}
	if got := redisCalls(t, e.srv); len(got) != 0 {
		t.Errorf("Redis commands without session: got %v, want none", got)
	}
}

// TestInvalidJWTCookie: on dual, a refused JWT cookie is cleared and the
// session, if valid, authenticates.
func TestInvalidJWTCookie(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name    string
		token   func(t *testing.T, e *testEnv) string
		session bool
		rollout int
		status  int
		source  Source
		reason  Reason
		cleared bool // the response clears id_token
		minted  bool // the response sets a new id_token
	}{
		{name: "forged, session", token: forgedToken, session: true, rollout: 0,
			status: 200, source: SourceSession, reason: ReasonCookieInvalid, cleared: true},
		{name: "garbage, session", token: func(*testing.T, *testEnv) string { return "not.a.token" }, session: true, rollout: 0,
			status: 200, source: SourceSession, reason: ReasonCookieInvalid, cleared: true},
		{name: "expired, session", token: expiredToken, session: true, rollout: 0,
			status: 200, source: SourceSession, reason: ReasonCookieExpired, cleared: true},
		{name: "forged, session, converted", token: forgedToken, session: true, rollout: 100,
			status: 200, source: SourceSession, reason: ReasonCookieInvalid, minted: true},
		{name: "forged, no session", token: forgedToken, rollout: 100,
			status: 401, source: SourceRejected, reason: ReasonCookieInvalid, cleared: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnvOn(t, srv, nil)
			if err := e.b.SetRolloutPercent(tt.rollout); err != nil {
				t.Fatal(err)
			}
			tok := tt.token(t, e)
			e.secret(tok)
			cookies := []*http.Cookie{e.jwtCookie(tok)}
			if tt.session {
				ck, _ := e.session(t, testUser("1"))
				cookies = append(cookies, ck)
			}
			resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"), nil, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			if tt.status == 200 {
				if got := resp.identity(t); got.Source != tt.source.String() || got.Subject != "1" {
					t.Errorf("identity: got %s/%s, want 1/%v", got.Subject, got.Source, tt.source)
				}
			} else if got := resp.reason(); got != tt.reason.String() {
				t.Errorf("reason: got %q, want %q", got, tt.reason)
			}
			var set []*http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == "id_token" {
					set = append(set, c)
					e.secret(c.Value)
				}
			}
			switch {
			case tt.cleared:
				if len(set) != 1 || set[0].MaxAge >= 0 || set[0].Value != "" {
					t.Errorf("id_token: got %v, want one clearing Set-Cookie", cookiesDesc(set...))
				}
			case tt.minted:
				if len(set) != 1 || set[0].MaxAge <= 0 {
					t.Errorf("id_token: got %v, want one new cookie and no clearing", cookiesDesc(set...))
				}
			}
			wantRequests(t, e.b, "/dual", map[Mode]map[Source]uint64{Dual: {tt.source: 1}})
			wantReasons(t, e.b, "/dual", map[Reason]uint64{tt.reason: 1})
		})
	}
	// On a legacy route the cookie is left alone.
	t.Run("legacy keeps it", func(t *testing.T) {
		e := newTestEnvOn(t, srv, nil)
		ck, _ := e.session(t, testUser("1"))
		tok := forgedToken(t, e)
		resp := do(t, e.ts.Client(), http.MethodGet, e.url("/legacy"), nil, e.jwtCookie(tok), ck)
		if resp.StatusCode != 200 || resp.identity(t).Source != "session" || len(resp.Cookies()) != 0 {
			t.Errorf("got %v %s cookies %v, want 200 from session, no Set-Cookie", resp.StatusCode, resp.Body, cookiesDesc(resp.Cookies()...))
		}
		wantReasons(t, e.b, "/legacy", map[Reason]uint64{ReasonCookieInvalid: 1})
	})
}

// forgedToken is a well-formed token for "1" signed by an unknown key.
func forgedToken(t *testing.T, e *testEnv) string {
	t.Helper()
	tok := mintTestTokenWith(t, newTestKey(t), e.b, "1", nil)
	e.secret(tok)
	return tok
}

// expiredToken is a token of e's key for "1" that expired 5 minutes ago.
func expiredToken(t *testing.T, e *testEnv) string {
	t.Helper()
	now := e.clock.Now()
	return e.token(t, "1", func(c *Claims) {
		c.IssuedAt = jwt.NewNumericDate(now.Add(-20 * time.Minute))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(now.Add(-5 * time.Minute))
	})
}

func TestBearerAndCookieSubjects(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name      string
		bearerSub string
		cookieSub string
		mismatch  uint64
	}{
		{name: "different", bearerSub: "alice", cookieSub: "bob", mismatch: 1},
		{name: "same", bearerSub: "alice", cookieSub: "alice", mismatch: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnvOn(t, srv, nil)
			ck, _ := e.session(t, testUser("carol"))
			resetRedisStats(t, e.srv)
			resp := do(t, e.ts.Client(), http.MethodGet, e.url("/dual"),
				bearer(e.token(t, tt.bearerSub, nil)), e.jwtCookie(e.token(t, tt.cookieSub, nil)), ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200", resp.StatusCode)
			}
			if got := resp.identity(t); got.Subject != tt.bearerSub || got.Source != "jwt_bearer" {
				t.Errorf("identity: got %s/%s, want %s/jwt_bearer", got.Subject, got.Source, tt.bearerSub)
			}
			wantRequests(t, e.b, "/dual", map[Mode]map[Source]uint64{Dual: {SourceJWTBearer: 1}})
			wantReasons(t, e.b, "/dual", map[Reason]uint64{ReasonSubjectMismatch: tt.mismatch})
			if got := strings.Contains(e.logs.String(), "bearer wins"); got != (tt.mismatch == 1) {
				t.Errorf("mismatch logged: got %v, want %v", got, tt.mismatch == 1)
			}
			if got := redisCalls(t, e.srv); len(got) != 0 {
				t.Errorf("Redis commands: got %v, want none", got)
			}
		})
	}
}

// TestStoreUnavailable: with Redis hung, JWT requests are served and
// session-only requests get 503 with Retry-After quickly; nothing is
// cleared or deleted.
func TestStoreUnavailable(t *testing.T) {
	tests := []struct {
		name      string
		blackhole bool // a listener that never replies
		kill      bool // connection refused; else srv.Pause
		boj       bool // else StoreSource
		cache     bool // tokens verified (and cached) before the fault
	}{
		{name: "pause/store/cached", cache: true},
		{name: "pause/boj/uncached", boj: true},
		{name: "blackhole/store/uncached", blackhole: true},
		{name: "blackhole/boj/cached", blackhole: true, boj: true, cache: true},
		{name: "kill/store/uncached", kill: true},
		{name: "kill/boj/cached", kill: true, boj: true, cache: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, func(e *testEnv, c *Config) {
				client := e.rdb
				if tt.blackhole {
					opt := e.srv.Options()
					opt.Addr = redistest.Blackhole(t)
					client = redis.NewClient(opt)
					t.Cleanup(func() { _ = client.Close() })
				}
				if tt.boj {
					c.Sessions, _ = BojSource(client, testSessionName, testKeyPairs()...)
				} else {
					c.Sessions = StoreSource(newTestStore(t, client, nil), testSessionName)
				}
				if !tt.cache {
					c.CacheSize = -1
				}
			})
			ck, id := e.session(t, testUser("1"))
			bearerTok, cookieTok := e.token(t, "1", nil), e.token(t, "1", nil)
			c := e.ts.Client()
			if tt.cache {
				do(t, c, http.MethodGet, e.url("/dual"), bearer(bearerTok))
				do(t, c, http.MethodGet, e.url("/dual"), nil, e.jwtCookie(cookieTok), ck)
			}
			switch {
			case tt.kill:
				e.srv.Kill()
			case !tt.blackhole:
				e.srv.Pause()
				defer e.srv.Resume()
			}

			steps := []struct {
				name    string
				route   string
				hdr     http.Header
				cookies []*http.Cookie
				status  int
				source  string
			}{
				{name: "bearer", route: "/dual", hdr: bearer(bearerTok), status: 200, source: "jwt_bearer"},
				{name: "bearer jwt route", route: "/jwt", hdr: bearer(bearerTok), status: 200, source: "jwt_bearer"},
				{name: "cookie", route: "/dual", cookies: []*http.Cookie{e.jwtCookie(cookieTok), ck}, status: 200, source: "jwt_cookie"},
				{name: "session only", route: "/dual", cookies: []*http.Cookie{ck}, status: 503},
				{name: "session only legacy", route: "/legacy", cookies: []*http.Cookie{ck}, status: 200},
			}
			for _, s := range steps {
				start := time.Now()
				resp := do(t, c, http.MethodGet, e.url(s.route), s.hdr, s.cookies...)
				elapsed := time.Since(start)
				if resp.StatusCode != s.status {
					t.Errorf("%s: status: got %v, want %v (%s)", s.name, resp.StatusCode, s.status, resp.Body)
					continue
				}
				if s.source != "" {
					if got := resp.identity(t).Source; got != s.source {
						t.Errorf("%s: source: got %v, want %v", s.name, got, s.source)
					}
					if elapsed > 300*time.Millisecond {
						t.Errorf("%s: took %v, want no wait on Redis", s.name, elapsed)
					}
				}
				if elapsed > 2*time.Second {
					t.Errorf("%s: took %v, want under 2s", s.name, elapsed)
				}
				if s.status == 503 {
					if got := resp.Header.Get("Retry-After"); got == "" {
						t.Errorf("%s: no Retry-After", s.name)
					}
					if got := resp.reason(); got != ReasonStoreUnavailable.String() {
						t.Errorf("%s: reason: got %q, want %q", s.name, got, ReasonStoreUnavailable)
					}
				}
				if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
					t.Errorf("%s: Set-Cookie headers: got %v, want none", s.name, len(got))
				}
			}
			if !tt.blackhole && !tt.kill {
				e.srv.Resume()
			}
			if !tt.kill {
				n, err := e.rdb.Exists(context.Background(), "session_"+id).Result()
				if err != nil || n != 1 {
					t.Errorf("session key after the fault: got %v (%v), want it to exist", n, err)
				}
			}
			rc := routeCounts(t, e.b, "/dual")
			if got := rc.Rejections[ReasonStoreUnavailable]; got != 1 {
				t.Errorf("session_store_unavailable on /dual: got %v, want 1", got)
			}
			if got := rc.Requests[Dual][SourceRejected]; got != 1 {
				t.Errorf("rejected on /dual: got %v, want 1", got)
			}
		})
	}
}

func TestCrossOrigin(t *testing.T) {
	srv := redistest.New(t)
	const (
		cross = "cross-site"
		same  = "same-origin"
	)
	tests := []struct {
		name   string
		method string
		route  string
		cred   cred
		fetch  string // Sec-Fetch-Site
		origin string // Origin; "self" for the server's own
		status int
		source Source
	}{
		{name: "cookie cross-site", method: "POST", route: "/dual", cred: credJWTCookie, fetch: cross, status: 403, source: SourceRejected},
		{name: "cookie other origin", method: "POST", route: "/dual", cred: credJWTCookie, origin: "https://evil.example", status: 403, source: SourceRejected},
		{name: "session cross-site", method: "POST", route: "/dual", cred: credSession, fetch: cross, status: 403, source: SourceRejected},
		{name: "session other origin", method: "POST", route: "/dual", cred: credSession, origin: "https://evil.example", status: 403, source: SourceRejected},
		{name: "cookie jwt route cross-site", method: "POST", route: "/jwt", cred: credJWTCookie, fetch: cross, status: 403, source: SourceRejected},
		{name: "bearer cross-site", method: "POST", route: "/dual", cred: credBearer, fetch: cross, status: 200, source: SourceJWTBearer},
		{name: "bearer other origin", method: "POST", route: "/jwt", cred: credBearer, origin: "https://evil.example", status: 200, source: SourceJWTBearer},
		{name: "cookie same-origin", method: "POST", route: "/dual", cred: credJWTCookie, fetch: same, status: 200, source: SourceJWTCookie},
		{name: "cookie own origin", method: "POST", route: "/dual", cred: credJWTCookie, origin: "self", status: 200, source: SourceJWTCookie},
		{name: "cookie no headers", method: "POST", route: "/dual", cred: credJWTCookie, status: 200, source: SourceJWTCookie},
		{name: "session same-origin", method: "POST", route: "/dual", cred: credSession, fetch: same, status: 200, source: SourceSession},
		{name: "cookie cross-site GET", method: "GET", route: "/dual", cred: credJWTCookie, fetch: cross, status: 200, source: SourceJWTCookie},
		{name: "legacy cookie cross-site", method: "POST", route: "/legacy", cred: credJWTCookie, fetch: cross, status: 200, source: SourceJWTCookie},
		{name: "legacy session cross-site", method: "POST", route: "/legacy", cred: credSession, fetch: cross, status: 200, source: SourceSession},
		{name: "none cross-site", method: "POST", route: "/dual", cred: credNone, fetch: cross, status: 401, source: SourceAnonymous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnvOn(t, srv, nil)
			hdr, cookies := credRequest(t, e, tt.cred)
			if hdr == nil {
				hdr = http.Header{}
			}
			if tt.fetch != "" {
				hdr.Set("Sec-Fetch-Site", tt.fetch)
			}
			switch tt.origin {
			case "":
			case "self":
				hdr.Set("Origin", e.ts.URL)
			default:
				hdr.Set("Origin", tt.origin)
			}
			resetRedisStats(t, e.srv)
			resp := do(t, e.ts.Client(), tt.method, e.url(tt.route), hdr, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			mode := testRoutes[tt.route]
			wantRequests(t, e.b, tt.route, map[Mode]map[Source]uint64{mode: {tt.source: 1}})
			if tt.status == 403 {
				if got := resp.reason(); got != "cross_origin" {
					t.Errorf("reason: got %q, want cross_origin", got)
				}
				wantReasons(t, e.b, tt.route, map[Reason]uint64{ReasonCrossOrigin: 1})
				if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
					t.Errorf("Set-Cookie headers: got %v, want none", len(got))
				}
				if got := redisCalls(t, e.srv); len(got) != 0 {
					t.Errorf("Redis commands of a refused request: got %v, want none", got)
				}
			} else if tt.status == 200 {
				if got := resp.identity(t).Source; got != tt.source.String() {
					t.Errorf("source: got %v, want %v", got, tt.source)
				}
			}
		})
	}
}

// TestLogsHoldNoCredentials drives every logging path of the middleware
// and checks the logs name reasons but never a token, a cookie value or a
// raw session ID.
func TestLogsHoldNoCredentials(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.ts.Client()
	for _, cr := range []cred{credBadBearer, credBadSession, credUnknownSession, credSession, credJWTCookie, credBearer} {
		for _, route := range []string{"/legacy", "/dual", "/jwt"} {
			hdr, cookies := credRequest(t, e, cr)
			resp := do(t, c, http.MethodGet, e.url(route), hdr, cookies...)
			for _, ck := range resp.Cookies() {
				e.secret(ck.Value)
			}
		}
	}
	// A guest session (no subject) authenticates nobody.
	ck, _ := e.session(t, map[any]any{"username": "nobody"})
	if r := do(t, c, http.MethodGet, e.url("/dual"), nil, ck); r.StatusCode != http.StatusUnauthorized || r.reason() != "no_credentials" {
		t.Errorf("guest session on dual: got %d %q, want 401 no_credentials", r.StatusCode, r.reason())
	}
	// Subject mismatch (logged).
	do(t, c, http.MethodGet, e.url("/dual"), bearer(e.token(t, "a", nil)), e.jwtCookie(e.token(t, "b", nil)))
	// An expired and a forged cookie.
	for _, tok := range []string{expiredToken(t, e), forgedToken(t, e)} {
		e.secret(tok)
		do(t, c, http.MethodGet, e.url("/dual"), nil, e.jwtCookie(tok))
		do(t, c, http.MethodGet, e.url("/dual"), bearer(tok))
	}
	// A token put in the Authorization header under another scheme and a
	// cookie too large.
	tok := e.token(t, "1", nil)
	do(t, c, http.MethodGet, e.url("/dual"), http.Header{"Authorization": {"Bearer " + tok + "x"}})
	e.secret(tok + "x")
	big := &http.Cookie{Name: testSessionName, Value: strings.Repeat("A", 5000)}
	do(t, c, http.MethodGet, e.url("/dual"), nil, big)

	logs := e.logs.String()
	for _, want := range []string{"credential refused", "bearer_invalid", "session_invalid", "session_unknown",
		"session_on_jwt_route", "bearer wins", "jwt_cookie_expired"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	// newTestEnv's cleanup checks every recorded secret; check now too.
	e.mu.Lock()
	secrets := append([]string(nil), e.secrets...)
	e.mu.Unlock()
	if len(secrets) < 20 {
		t.Errorf("secrets recorded: got %v, want at least 20", len(secrets))
	}
	checkNoSecrets(t, logs, secrets...)
}

// TestUnmatchedRoute: with the bridge wrapping the whole router from the
// outside, no mux route is current: every request is labelled
// "unmatched", which stays a single label.
func TestUnmatchedRoute(t *testing.T) {
	tests := []struct {
		name   string
		mode   Mode
		status int
		source Source
		reason map[Reason]uint64
	}{
		{name: "legacy", mode: Legacy, status: 404, source: SourceAnonymous},
		{name: "dual", mode: Dual, status: 401, source: SourceAnonymous, reason: map[Reason]uint64{ReasonNoCredentials: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			router := newTestRouter(nil)
			b := newTestBridge(t, func(c *Config) {
				c.Routes, c.Router, c.DefaultMode = testRoutes, router, tt.mode
			})
			ts := httptest.NewServer(b.Middleware(router))
			t.Cleanup(ts.Close)
			labels := len(b.Snapshot())

			resp := do(t, ts.Client(), http.MethodGet, ts.URL+"/nope", nil)
			if resp.StatusCode != tt.status {
				t.Errorf("status: got %v, want %v", resp.StatusCode, tt.status)
			}
			wantRequests(t, b, RouteUnmatched, map[Mode]map[Source]uint64{tt.mode: {tt.source: 1}})
			wantReasons(t, b, RouteUnmatched, tt.reason)
			for i := range 30 {
				do(t, ts.Client(), http.MethodGet, fmt.Sprintf("%s/random/%d", ts.URL, i), nil)
			}
			if got := routeCounts(t, b, RouteUnmatched).BySource()[tt.source]; got != 31 {
				t.Errorf("unmatched requests: got %v, want 31", got)
			}
			if got := len(b.Snapshot()); got != labels {
				t.Errorf("route labels: got %v, want %v", got, labels)
			}
			// A path of a route is unmatched too when wrapped from outside.
			do(t, ts.Client(), http.MethodGet, ts.URL+"/legacy", nil)
			if got := routeCounts(t, b, "/legacy").BySource(); got != [numSources]uint64{} {
				t.Errorf("/legacy counts: got %v, want none", got)
			}
		})
	}

	// With r.Use, mux runs no middleware for a path it does not match:
	// wrapping its NotFoundHandler counts those under "unmatched".
	t.Run("NotFoundHandler", func(t *testing.T) {
		router := newTestRouter(nil)
		b := newTestBridge(t, func(c *Config) { c.Routes, c.Router = testRoutes, router })
		router.Use(b.Middleware)
		router.NotFoundHandler = b.Middleware(http.NotFoundHandler())
		ts := httptest.NewServer(router)
		t.Cleanup(ts.Close)
		for i := range 3 {
			if got := do(t, ts.Client(), http.MethodGet, fmt.Sprintf("%s/x/%d", ts.URL, i), nil).StatusCode; got != 404 {
				t.Errorf("status: got %v, want 404", got)
			}
		}
		do(t, ts.Client(), http.MethodGet, ts.URL+"/legacy", nil)
		wantRequests(t, b, RouteUnmatched, map[Mode]map[Source]uint64{Legacy: {SourceAnonymous: 3}})
		wantRequests(t, b, "/legacy", map[Mode]map[Source]uint64{Legacy: {SourceAnonymous: 1}})
	})

	// Inside the router, routes are labelled by template, never raw path.
	t.Run("template", func(t *testing.T) {
		e := newTestEnv(t, nil)
		labels := len(e.b.Snapshot())
		for i := range 5 {
			do(t, e.ts.Client(), http.MethodGet, e.url(fmt.Sprintf("/dual/%d", i)), bearer(e.token(t, "1", nil)))
		}
		wantRequests(t, e.b, "/dual/{id}", map[Mode]map[Source]uint64{Dual: {SourceJWTBearer: 5}})
		if got := len(e.b.Snapshot()); got != labels {
			t.Errorf("route labels: got %v, want %v", got, labels)
		}
	})
}
