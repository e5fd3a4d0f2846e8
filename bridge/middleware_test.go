package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// mCred is a kind of credential a test request carries.
type mCred int

const (
	mCredNone           mCred = iota
	mCredSession              // a live legacy session
	mCredJWTCookie            // a valid JWT cookie
	mCredBearer               // a valid bearer token
	mCredBadBearer            // a bearer token signed by an unknown key
	mCredUnknownSession       // a valid session cookie whose Redis key is gone
	mCredBadSession           // a session cookie with a broken MAC
	mCredEmptyBearer          // "Authorization: Bearer " with nothing after it
)

func (c mCred) String() string {
	return [...]string{"none", "session", "jwt_cookie", "bearer", "bad_bearer", "unknown_session", "bad_session", "empty_bearer"}[c]
}

// mTamper changes one character in the middle of a cookie value.
func mTamper(v string) string {
	i := len(v) / 2
	ch := byte('A')
	if v[i] == 'A' {
		ch = 'B'
	}
	return v[:i] + string(ch) + v[i+1:]
}

// mCredRequest returns the headers and cookies of a request carrying c for
// user "1", and every credential made for it (tokens, cookie values, raw
// session IDs), all recorded with e.Secret too.
func mCredRequest(t *testing.T, e *bridgetest.Env, c mCred) (http.Header, []*http.Cookie, []string) {
	t.Helper()
	switch c {
	case mCredSession:
		ck, id := e.Session(t, bridgetest.User("1"))
		return nil, []*http.Cookie{ck}, []string{ck.Value, id}
	case mCredJWTCookie:
		tok := e.Token(t, "1", nil)
		return nil, []*http.Cookie{e.JWTCookie(tok)}, []string{tok}
	case mCredBearer:
		tok := e.Token(t, "1", nil)
		return bridgetest.Bearer(tok), nil, []string{tok}
	case mCredBadBearer:
		other, otherKey, _ := bridgetest.NewBridge(t, nil)
		tok := otherKey.Mint(t, other, "1", nil)
		e.Secret(tok)
		return bridgetest.Bearer(tok), nil, []string{tok}
	case mCredUnknownSession:
		ck, id := e.Session(t, bridgetest.User("1"))
		if err := e.Store.Delete(context.Background(), id); err != nil {
			t.Fatalf("delete session: %v", err)
		}
		return nil, []*http.Cookie{ck}, []string{ck.Value, id}
	case mCredBadSession:
		ck, id := e.Session(t, bridgetest.User("1"))
		good := ck.Value
		ck.Value = mTamper(ck.Value)
		e.Secret(ck.Value)
		return nil, []*http.Cookie{ck}, []string{good, id, ck.Value}
	case mCredEmptyBearer:
		return http.Header{"Authorization": {"Bearer "}}, nil, nil
	}
	return nil, nil, nil
}

// mURL parses a URL.
func mURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse URL %q: %v", s, err)
	}
	return u
}

// mInMode returns a route's request counts in mode m.
func mInMode(rc bridge.RouteCounts, m bridge.Mode) bridge.SourceCounts {
	for mode, c := range rc.ByMode() {
		if mode == m {
			return c
		}
	}
	return bridge.SourceCounts{}
}

func TestModes(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		route   string
		cred    mCred
		status  int
		source  bridge.Source
		reasons map[bridge.Reason]uint64
		www     string // WWW-Authenticate
		convert bool
	}{
		// legacy observes: never refuses, never converts.
		{route: "/legacy", cred: mCredNone, status: 200, source: bridge.SourceAnonymous},
		{route: "/legacy", cred: mCredEmptyBearer, status: 200, source: bridge.SourceAnonymous},
		{route: "/legacy", cred: mCredSession, status: 200, source: bridge.SourceSession},
		{route: "/legacy", cred: mCredJWTCookie, status: 200, source: bridge.SourceJWTCookie},
		{route: "/legacy", cred: mCredBearer, status: 200, source: bridge.SourceJWTBearer},
		{route: "/legacy", cred: mCredBadBearer, status: 200, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}},
		{route: "/legacy", cred: mCredUnknownSession, status: 200, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonSessionUnknown: 1}},
		{route: "/legacy", cred: mCredBadSession, status: 200, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonSessionInvalid: 1}},
		// dual accepts a JWT or a session.
		{route: "/dual", cred: mCredNone, status: 401, source: bridge.SourceAnonymous, reasons: map[bridge.Reason]uint64{bridge.ReasonNoCredentials: 1}, www: "Bearer"},
		{route: "/dual", cred: mCredEmptyBearer, status: 401, source: bridge.SourceAnonymous, reasons: map[bridge.Reason]uint64{bridge.ReasonNoCredentials: 1}, www: "Bearer"},
		{route: "/dual", cred: mCredSession, status: 200, source: bridge.SourceSession, convert: true},
		{route: "/dual", cred: mCredJWTCookie, status: 200, source: bridge.SourceJWTCookie},
		{route: "/dual", cred: mCredBearer, status: 200, source: bridge.SourceJWTBearer},
		{route: "/dual", cred: mCredBadBearer, status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`},
		{route: "/dual", cred: mCredUnknownSession, status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonSessionUnknown: 1}, www: "Bearer"},
		{route: "/dual", cred: mCredBadSession, status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonSessionInvalid: 1}, www: "Bearer"},
		// jwt accepts JWTs only.
		{route: "/jwt", cred: mCredNone, status: 401, source: bridge.SourceAnonymous, reasons: map[bridge.Reason]uint64{bridge.ReasonNoCredentials: 1}, www: "Bearer"},
		{route: "/jwt", cred: mCredSession, status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonSessionOnJWT: 1}, www: "Bearer"},
		{route: "/jwt", cred: mCredJWTCookie, status: 200, source: bridge.SourceJWTCookie},
		{route: "/jwt", cred: mCredBearer, status: 200, source: bridge.SourceJWTBearer},
		{route: "/jwt", cred: mCredBadBearer, status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`},
		{route: "/jwt", cred: mCredUnknownSession, status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonSessionOnJWT: 1}, www: "Bearer"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.route, "/")+"/"+tt.cred.String(), func(t *testing.T) {
			t.Parallel()
			e := bridgetest.NewEnvOn(t, srv, nil)
			hdr, cookies, _ := mCredRequest(t, e, tt.cred)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL(tt.route), hdr, cookies...)

			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (body %s)", resp.StatusCode, tt.status, resp.Body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.www {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.www)
			}
			if tt.status == 200 {
				id := resp.Identity(t)
				authed := tt.source != bridge.SourceAnonymous && tt.source != bridge.SourceRejected
				if id.Has != authed {
					t.Errorf("identity present: got %v, want %v", id.Has, authed)
				}
				if authed && (id.Subject != "1" || id.Source != tt.source.String()) {
					t.Errorf("identity: got %s/%s, want 1/%s", id.Subject, id.Source, tt.source)
				}
			} else {
				var want bridge.Reason
				for r := range tt.reasons {
					want = r
				}
				if got := resp.Reason(); got != want.String() {
					t.Errorf("body reason: got %q, want %q", got, want)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type: got %q, want application/json", ct)
				}
			}
			if got := resp.Cookie(bridge.DefaultCookieName) != nil; got != tt.convert {
				t.Errorf("id_token set: got %v, want %v", got, tt.convert)
			}
			mode := bridgetest.Routes[tt.route]
			bridgetest.WantRequests(t, e.B, tt.route, map[bridge.Mode]map[bridge.Source]uint64{mode: {tt.source: 1}})
			bridgetest.WantReasons(t, e.B, tt.route, tt.reasons)
			wantConv := uint64(0)
			if tt.convert {
				wantConv = 1
			}
			if got := bridgetest.RouteCounts(t, e.B, tt.route).Conversions; got != wantConv {
				t.Errorf("conversions: got %v, want %v", got, wantConv)
			}
			if got := bridgetest.TotalRequests(e.B); got != 1 {
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
		creds   []mCred
		expired bool // add an expired bearer instead
		status  int
		source  bridge.Source
		reasons map[bridge.Reason]uint64
		www     string
		noRedis bool
	}{
		{name: "legacy bad bearer + session", route: "/legacy", creds: []mCred{mCredBadBearer, mCredSession},
			status: 200, source: bridge.SourceSession, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}},
		{name: "legacy bad bearer + cookie", route: "/legacy", creds: []mCred{mCredBadBearer, mCredJWTCookie},
			status: 200, source: bridge.SourceJWTCookie, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}},
		{name: "dual bad bearer + cookie", route: "/dual", creds: []mCred{mCredBadBearer, mCredJWTCookie},
			status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`, noRedis: true},
		{name: "dual bad bearer + session", route: "/dual", creds: []mCred{mCredBadBearer, mCredSession},
			status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerInvalid: 1}, www: `Bearer error="invalid_token"`, noRedis: true},
		{name: "dual expired bearer", route: "/dual", expired: true,
			status: 401, source: bridge.SourceRejected, reasons: map[bridge.Reason]uint64{bridge.ReasonBearerExpired: 1}, www: `Bearer error="invalid_token"`, noRedis: true},
		{name: "jwt cookie + session", route: "/jwt", creds: []mCred{mCredJWTCookie, mCredSession},
			status: 200, source: bridge.SourceJWTCookie, noRedis: true},
		{name: "dual bearer + session", route: "/dual", creds: []mCred{mCredBearer, mCredSession},
			status: 200, source: bridge.SourceJWTBearer, noRedis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bridgetest.NewEnvOn(t, srv, nil)
			hdr := http.Header{}
			var cookies []*http.Cookie
			for _, c := range tt.creds {
				h, cs, _ := mCredRequest(t, e, c)
				for k, v := range h {
					hdr[k] = v
				}
				cookies = append(cookies, cs...)
			}
			if tt.expired {
				hdr = bridgetest.Bearer(mExpiredToken(t, e))
			}
			bridgetest.ResetRedisStats(t, e.Srv)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL(tt.route), hdr, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.www {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.www)
			}
			if tt.status == 200 {
				if got := resp.Identity(t).Source; got != tt.source.String() {
					t.Errorf("source: got %v, want %v", got, tt.source)
				}
			}
			bridgetest.WantRequests(t, e.B, tt.route, map[bridge.Mode]map[bridge.Source]uint64{bridgetest.Routes[tt.route]: {tt.source: 1}})
			bridgetest.WantReasons(t, e.B, tt.route, tt.reasons)
			if got := bridgetest.RedisCalls(t, e.Srv); tt.noRedis && len(got) != 0 {
				t.Errorf("Redis commands: got %v, want none", got)
			}
		})
	}
}

// TestSetMode switches a route's mode at run time: each request is counted
// under the mode it was served in.
func TestSetMode(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	ck, _ := e.Session(t, bridgetest.User("1"))
	c := e.TS.Client()

	steps := []struct {
		set    func()
		status int
	}{
		{func() {}, 200},
		{func() { _ = e.B.SetMode("/dual", bridge.JWT) }, 401},
		{func() { e.B.ResetMode("/dual") }, 200},
		{func() { _ = e.B.SetMode("/dual", bridge.Legacy) }, 200},
	}
	for i, s := range steps {
		s.set()
		if got := bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), nil, ck).StatusCode; got != s.status {
			t.Errorf("step %d: status: got %v, want %v", i, got, s.status)
		}
	}
	bridgetest.WantRequests(t, e.B, "/dual", map[bridge.Mode]map[bridge.Source]uint64{
		bridge.Dual:   {bridge.SourceSession: 2},
		bridge.JWT:    {bridge.SourceRejected: 1},
		bridge.Legacy: {bridge.SourceSession: 1},
	})
	bridgetest.WantReasons(t, e.B, "/dual", map[bridge.Reason]uint64{bridge.ReasonSessionOnJWT: 1})
	if got := bridgetest.RouteCounts(t, e.B, "/dual").Conversions; got != 2 {
		t.Errorf("conversions: got %v, want 2", got)
	}
	if err := e.B.SetMode("/dual", bridge.Mode(9)); err == nil {
		t.Errorf("SetMode(invalid): got nil error, want one")
	}
}

// TestCountedOnceConcurrently sends many mixed requests at once: each is
// counted exactly once.
func TestCountedOnceConcurrently(t *testing.T) {
	// No Router walked: routes are added on first sight, concurrently.
	e := bridgetest.NewEnv(t, func(_ *bridgetest.Env, c *bridge.Config) { c.Router = nil })
	creds := []mCred{mCredNone, mCredSession, mCredJWTCookie, mCredBearer, mCredBadBearer, mCredUnknownSession, mCredBadSession}
	type req struct {
		hdr     http.Header
		cookies []*http.Cookie
	}
	reqs := make([]req, len(creds))
	for i, c := range creds {
		reqs[i].hdr, reqs[i].cookies, _ = mCredRequest(t, e, c)
	}
	routes := []string{"/legacy", "/dual", "/jwt", "/dual/7"}
	const workers, each = 4, 21
	tr := e.TS.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = workers
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := reqs[(w+i)%len(reqs)]
				url := e.URL(routes[i%len(routes)])
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
	if got, want := bridgetest.TotalRequests(e.B), uint64(workers*each); got != want {
		t.Errorf("requests counted: got %v, want %v", got, want)
	}
}

func TestConversionCookie(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name     string
		mod      func(*bridgetest.Env, *bridge.Config)
		secure   bool
		sameSite http.SameSite
	}{
		{name: "default", secure: true, sameSite: http.SameSiteLaxMode},
		{name: "insecure dev", mod: func(_ *bridgetest.Env, c *bridge.Config) { c.InsecureDevCookies = true }, secure: false, sameSite: http.SameSiteLaxMode},
		{name: "strict", mod: func(_ *bridgetest.Env, c *bridge.Config) { c.SameSite = http.SameSiteStrictMode }, secure: true, sameSite: http.SameSiteStrictMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := bridgetest.NewEnvOn(t, srv, tt.mod)
			ck, id := e.Session(t, bridgetest.User("1"))
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200", resp.StatusCode)
			}
			if got := resp.Identity(t); got.Source != "session" || got.Subject != "1" || got.Name != "user1" {
				t.Errorf("identity: got %+v, want session for 1/user1", got)
			}
			name := e.B.Config().CookieName
			var set []string
			for _, h := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(h, name+"=") {
					set = append(set, h)
				}
			}
			if len(set) != 1 {
				t.Fatalf("%s Set-Cookie headers: got %v, want 1", name, len(set))
			}
			c := resp.Cookie(name)
			e.Secret(c.Value)
			if !c.HttpOnly || c.Secure != tt.secure || c.SameSite != tt.sameSite || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie attributes: got %q, want HttpOnly, Secure=%v, SameSite=%v, Path=/, no Domain", set[0], tt.secure, tt.sameSite)
			}
			if ttl := int(bridge.DefaultTokenTTL / time.Second); c.MaxAge <= 0 || c.MaxAge > ttl {
				t.Errorf("Max-Age: got %v, want 1..%v", c.MaxAge, ttl)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
			claims := bridgetest.TokenClaims(t, c.Value)
			if claims.Subject != "1" || claims.Name != "user1" || len(claims.Roles) != 1 || claims.Roles[0] != "user" {
				t.Errorf("claims: got sub %q name %q roles %v, want 1, user1, [user]", claims.Subject, claims.Name, claims.Roles)
			}
			if claims.Issuer != bridgetest.Issuer || len(claims.Audience) != 1 || claims.Audience[0] != bridgetest.Audience {
				t.Errorf("iss/aud: got %q/%v, want %q/[%s]", claims.Issuer, claims.Audience, bridgetest.Issuer, bridgetest.Audience)
			}
			if claims.SID == "" || claims.SID == id || strings.Contains(c.Value, id) {
				t.Errorf("sid: got %q, want a hash that is not the raw session ID", claims.SID)
			}
			sid, _ := bridge.SIDHash(e.B.Config().SIDKey)
			if got, want := claims.SID, sid(id); got != want {
				t.Errorf("sid: got %q, want %q", got, want)
			}
			if got := claims.ExpiresAt.Sub(claims.IssuedAt.Time); got != bridge.DefaultTokenTTL {
				t.Errorf("exp-iat: got %v, want %v", got, bridge.DefaultTokenTTL)
			}
			if got := int(claims.ExpiresAt.Sub(e.Clock.Now()) / time.Second); c.MaxAge > got {
				t.Errorf("Max-Age: got %v, want at most exp-now = %v", c.MaxAge, got)
			}
		})
	}
}

// TestConversionFlow converts a session with a browser-like client: the
// next request is authenticated by the JWT cookie; each conversion mints
// a new jti.
func TestConversionFlow(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	ck, _ := e.Session(t, bridgetest.User("1"))
	jar := bridgetest.NewJarClient(t, e.TS)
	jar.Jar.SetCookies(mURL(t, e.TS.URL), []*http.Cookie{ck})

	first := bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
	if got := first.Identity(t).Source; got != "session" {
		t.Fatalf("first request source: got %v, want session", got)
	}
	tok := first.Cookie(bridge.DefaultCookieName)
	if tok == nil {
		t.Fatalf("first request: no id_token set")
	}
	e.Secret(tok.Value)
	for i := range 3 {
		resp := bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
		if got := resp.Identity(t).Source; got != "jwt_cookie" {
			t.Errorf("request %d source: got %v, want jwt_cookie", i+2, got)
		}
		if resp.Cookie(bridge.DefaultCookieName) != nil {
			t.Errorf("request %d: id_token set again", i+2)
		}
	}
	// The JWT cookie also opens the jwt route.
	if got := bridgetest.Do(t, jar, http.MethodGet, e.URL("/jwt"), nil).StatusCode; got != 200 {
		t.Errorf("/jwt status with the converted cookie: got %v, want 200", got)
	}
	bridgetest.WantRequests(t, e.B, "/dual", map[bridge.Mode]map[bridge.Source]uint64{bridge.Dual: {bridge.SourceSession: 1, bridge.SourceJWTCookie: 3}})
	if got := bridgetest.RouteCounts(t, e.B, "/dual").Conversions; got != 1 {
		t.Errorf("conversions: got %v, want 1", got)
	}

	// Converting the same session again (a client without the cookie)
	// mints a new token with a new jti and the same sid.
	jtis := map[string]bool{bridgetest.TokenClaims(t, tok.Value).ID: true}
	sid := bridgetest.TokenClaims(t, tok.Value).SID
	for range 3 {
		c := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck).Cookie(bridge.DefaultCookieName)
		if c == nil {
			t.Fatalf("no id_token set")
		}
		e.Secret(c.Value)
		claims := bridgetest.TokenClaims(t, c.Value)
		if jtis[claims.ID] {
			t.Errorf("jti %q reused", claims.ID)
		}
		jtis[claims.ID] = true
		if claims.SID != sid {
			t.Errorf("sid: got %q, want %q", claims.SID, sid)
		}
	}
	if got := bridgetest.RouteCounts(t, e.B, "/dual").Conversions; got != 4 {
		t.Errorf("conversions: got %v, want 4", got)
	}
}

// TestConversionBoundedBySession: a token never outlives the session's
// remaining TTL when the source knows it.
func TestConversionBoundedBySession(t *testing.T) {
	srv := redistest.New(t)
	boj := func(e *bridgetest.Env) (bridge.SessionSource, error) {
		return redisstore.BojSource(e.RDB, bridgetest.SessionName, bridgetest.KeyPairs()...)
	}
	tests := []struct {
		name       string
		sessionTTL int // seconds
		tokenTTL   time.Duration
		source     func(e *bridgetest.Env) (bridge.SessionSource, error)
		wantMax    int // Max-Age bound, seconds
	}{
		{name: "boj 5m", sessionTTL: 300, tokenTTL: 15 * time.Minute, wantMax: 300, source: boj},
		{name: "boj 30s", sessionTTL: 30, tokenTTL: 15 * time.Minute, wantMax: 30, source: boj},
		{name: "boj longer than token", sessionTTL: 3600, tokenTTL: 10 * time.Minute, wantMax: 600, source: boj},
		// StoreSource asks redisstore.Store the remaining life at
		// conversion: bounded too.
		{name: "store 5m", sessionTTL: 300, tokenTTL: 15 * time.Minute, wantMax: 300,
			source: func(e *bridgetest.Env) (bridge.SessionSource, error) {
				return bridge.StoreSource(e.Store, bridgetest.SessionName), nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := bridgetest.NewEnvOn(t, srv, func(e *bridgetest.Env, c *bridge.Config) {
				src, err := tt.source(e)
				if err != nil {
					t.Fatalf("source: %v", err)
				}
				c.Sessions = src
				c.TokenTTL = tt.tokenTTL
			})
			short := bridgetest.NewStore(t, e.RDB, func(c *redisstore.Config) {
				c.Options = &sessions.Options{Path: "/", MaxAge: tt.sessionTTL, HttpOnly: true}
			})
			ck, id := bridgetest.SaveSession(t, short, bridgetest.User("1"))
			e.Secret(ck.Value, id)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
			c := resp.Cookie(bridge.DefaultCookieName)
			if c == nil {
				t.Fatalf("no id_token set (status %v)", resp.StatusCode)
			}
			e.Secret(c.Value)
			if c.MaxAge <= 0 || c.MaxAge > tt.wantMax || c.MaxAge < tt.wantMax-2 {
				t.Errorf("Max-Age: got %v, want %v (or a second or two less)", c.MaxAge, tt.wantMax)
			}
			claims := bridgetest.TokenClaims(t, c.Value)
			if got := int(claims.ExpiresAt.Sub(e.Clock.Now()) / time.Second); got > tt.wantMax {
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
		source func(e *bridgetest.Env) bridge.SessionSource
	}{
		{name: "store", source: func(e *bridgetest.Env) bridge.SessionSource {
			return bridge.StoreSource(e.Store, bridgetest.SessionName)
		}},
		{name: "boj", source: func(e *bridgetest.Env) bridge.SessionSource {
			s, _ := redisstore.BojSource(e.RDB, bridgetest.SessionName, bridgetest.KeyPairs()...)
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bridgetest.NewEnvOn(t, srv, func(e *bridgetest.Env, c *bridge.Config) { c.Sessions = tt.source(e) })
			ck, _ := e.Session(t, bridgetest.User("1"))
			jar := bridgetest.NewJarClient(t, e.TS)
			jar.Jar.SetCookies(mURL(t, e.TS.URL), []*http.Cookie{ck})
			bridgetest.ResetRedisStats(t, e.Srv)
			first := bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
			if c := first.Cookie(bridge.DefaultCookieName); c == nil {
				t.Fatalf("not converted")
			} else {
				e.Secret(c.Value)
			}
			if got := e.Srv.CommandCalls("get"); got != 1 {
				t.Errorf("GETs of the converting request: got %v, want 1", got)
			}

			bridgetest.ResetRedisStats(t, e.Srv)
			const n = 24
			routes := []string{"/dual", "/jwt", "/dual/3", "/legacy"}
			for i := range n {
				resp := bridgetest.Do(t, jar, http.MethodGet, e.URL(routes[i%len(routes)]), nil)
				if resp.StatusCode != 200 || resp.Identity(t).Source != "jwt_cookie" {
					t.Fatalf("request %d: got %v %s, want 200 from jwt_cookie", i, resp.StatusCode, resp.Body)
				}
			}
			if got := e.Srv.CommandCalls("get"); got != 0 {
				t.Errorf("GET calls: got %v, want 0", got)
			}
			if got := e.Srv.CommandCalls("pttl"); got != 0 {
				t.Errorf("PTTL calls: got %v, want 0", got)
			}
			if got := bridgetest.RedisCalls(t, e.Srv); len(got) != 0 {
				t.Errorf("Redis commands: got %v, want none", got)
			}
		})
	}
}

func TestRollout(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	_, inRollout := bridge.SIDHash(e.B.Config().SIDKey)
	const n = 200
	type sess struct {
		ck *http.Cookie
		id string
	}
	all := make([]sess, n)
	for i := range all {
		all[i].ck, all[i].id = e.Session(t, bridgetest.User(fmt.Sprint(i)))
	}
	c := e.TS.Client()
	converted := func(s sess) bool {
		t.Helper()
		resp := bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), nil, s.ck)
		if resp.StatusCode != 200 || resp.Identity(t).Source != "session" {
			t.Fatalf("got %v %s, want 200 from session", resp.StatusCode, resp.Body)
		}
		if ck := resp.Cookie(bridge.DefaultCookieName); ck != nil {
			e.Secret(ck.Value)
			return true
		}
		return false
	}

	if err := e.B.SetRolloutPercent(0); err != nil {
		t.Fatalf("SetRolloutPercent(0): %v", err)
	}
	for i, s := range all[:50] {
		if converted(s) {
			t.Fatalf("rollout 0: session %d converted", i)
		}
	}
	if got := bridgetest.RouteCounts(t, e.B, "/dual").Conversions; got != 0 {
		t.Errorf("rollout 0: conversions: got %v, want 0", got)
	}

	in := map[int]map[int]bool{} // percent → session index → converted
	var total uint64
	for _, p := range []int{30, 50} {
		if err := e.B.SetRolloutPercent(p); err != nil {
			t.Fatalf("SetRolloutPercent(%d): %v", p, err)
		}
		in[p] = map[int]bool{}
		for i, s := range all {
			got := converted(s)
			if again := converted(s); again != got {
				t.Errorf("rollout %d: session %d flapped: %v then %v", p, i, got, again)
			}
			if want := inRollout(s.id, p); got != want {
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
	if got := bridgetest.RouteCounts(t, e.B, "/dual").Conversions; got != total {
		t.Errorf("conversions: got %v, want %v", got, total)
	}

	if err := e.B.SetRolloutPercent(100); err != nil {
		t.Fatalf("SetRolloutPercent(100): %v", err)
	}
	for i, s := range all[:20] {
		if !converted(s) {
			t.Errorf("rollout 100: session %d not converted", i)
		}
	}
	for _, p := range []int{-1, 101} {
		if err := e.B.SetRolloutPercent(p); err == nil {
			t.Errorf("SetRolloutPercent(%d): got nil error, want one", p)
		}
	}
}

// TestSlidingRemint: a JWT cookie in its last quarter is re-minted while
// its session lives and cleared once the session is gone.
func TestSlidingRemint(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	ck, id := e.Session(t, bridgetest.User("1"))
	jar := bridgetest.NewJarClient(t, e.TS)
	jar.Jar.SetCookies(mURL(t, e.TS.URL), []*http.Cookie{ck})

	first := bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil).Cookie(bridge.DefaultCookieName)
	if first == nil {
		t.Fatalf("not converted")
	}
	e.Secret(first.Value)
	firstExp := bridgetest.TokenClaims(t, first.Value).ExpiresAt.Time

	// Half-way: no re-mint.
	e.Clock.Advance(5 * time.Minute)
	resp := bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
	if got := resp.Identity(t).Source; got != "jwt_cookie" {
		t.Errorf("at 5m: source: got %v, want jwt_cookie", got)
	}
	if c := resp.Cookie(bridge.DefaultCookieName); c != nil {
		t.Errorf("at 5m: id_token re-set, want untouched")
	}

	// Last quarter (3m left of 15m): re-minted with a later exp.
	e.Clock.Advance(7 * time.Minute)
	resp = bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
	if got := resp.Identity(t).Source; got != "jwt_cookie" {
		t.Errorf("at 12m: source: got %v, want jwt_cookie", got)
	}
	second := resp.Cookie(bridge.DefaultCookieName)
	if second == nil || second.MaxAge <= 0 {
		t.Fatalf("at 12m: id_token: got %v, want a new cookie", bridgetest.CookiesDesc(second))
	}
	e.Secret(second.Value)
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("at 12m: Cache-Control: got %q, want no-store", got)
	}
	claims := bridgetest.TokenClaims(t, second.Value)
	if !claims.ExpiresAt.After(firstExp) {
		t.Errorf("at 12m: exp: got %v, want after %v", claims.ExpiresAt.Time, firstExp)
	}
	sid, _ := bridge.SIDHash(e.B.Config().SIDKey)
	if claims.SID != sid(id) {
		t.Errorf("at 12m: sid: got %q, want the session's", claims.SID)
	}
	// The jar now holds the new token and uses it.
	resp = bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
	if resp.Cookie(bridge.DefaultCookieName) != nil {
		t.Errorf("after re-mint: id_token set again")
	}

	// The session is deleted (legacy logout): in the last quarter of the
	// new token, the cookie is cleared; the still valid token serves this
	// request.
	if err := e.Store.Delete(context.Background(), id); err != nil {
		t.Fatalf("delete session: %v", err)
	}
	e.Clock.Advance(12 * time.Minute)
	resp = bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
	if resp.StatusCode != 200 || resp.Identity(t).Source != "jwt_cookie" {
		t.Errorf("after logout: got %v %s, want 200 from jwt_cookie", resp.StatusCode, resp.Body)
	}
	if c := resp.Cookie(bridge.DefaultCookieName); c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("after logout: id_token: got %v, want cleared (Max-Age<0)", bridgetest.CookiesDesc(c))
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("after logout: Cache-Control: got %q, want no-store", got)
	}
	// Next, the jar has no JWT and the session is unknown: 401.
	resp = bridgetest.Do(t, jar, http.MethodGet, e.URL("/dual"), nil)
	if resp.StatusCode != 401 || resp.Reason() != "session_unknown" {
		t.Errorf("after clear: got %v %s, want 401 session_unknown", resp.StatusCode, resp.Body)
	}
}

// TestRemintStoreDown: a near-expiry JWT cookie whose session cannot be
// read (Redis hung) still serves the request, quickly, and is kept.
func TestRemintStoreDown(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	ck, id := e.Session(t, bridgetest.User("1"))
	tok := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck).Cookie(bridge.DefaultCookieName)
	if tok == nil {
		t.Fatalf("not converted")
	}
	e.Secret(tok.Value)
	e.Clock.Advance(13 * time.Minute)
	e.Srv.Pause()
	defer e.Srv.Resume()
	start := time.Now()
	resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(tok.Value), ck)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v, want under 2s", elapsed)
	}
	if resp.StatusCode != 200 || resp.Identity(t).Source != "jwt_cookie" {
		t.Errorf("got %v %s, want 200 from jwt_cookie", resp.StatusCode, resp.Body)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("Set-Cookie headers: got %v, want none", len(got))
	}
	e.Srv.Resume()
	if n, _ := e.RDB.Exists(context.Background(), "session_"+id).Result(); n != 1 {
		t.Errorf("session key: got %v, want it kept", n)
	}
}

// TestRemintOtherSession: a near-expiry token minted from another session
// than the request's, or from none, is not re-minted from it.
func TestRemintOtherSession(t *testing.T) {
	e := bridgetest.NewEnv(t, nil)
	ckA, _ := e.Session(t, bridgetest.User("1"))
	ckB, _ := e.Session(t, bridgetest.User("1"))
	tokA := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ckA).Cookie(bridge.DefaultCookieName)
	if tokA == nil {
		t.Fatalf("not converted")
	}
	e.Secret(tokA.Value)
	e.Clock.Advance(13 * time.Minute)
	// The request's own session decides (a JWT cookie of another session
	// never wins over it): a token is minted from B, never re-minted
	// from A's.
	resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(tokA.Value), ckB)
	if resp.StatusCode != 200 || resp.Identity(t).Source != "session" {
		t.Errorf("got %v %s, want 200 from the session", resp.StatusCode, resp.Body)
	}
	c := resp.Cookie(bridge.DefaultCookieName)
	if c == nil || c.Value == tokA.Value {
		t.Fatalf("id_token: got %v, want a token minted from session B", bridgetest.CookiesDesc(c))
	}
	e.Secret(c.Value)
	if a, b := bridgetest.TokenClaims(t, tokA.Value).SID, bridgetest.TokenClaims(t, c.Value).SID; a == b {
		t.Errorf("the new token carries session A's sid")
	}
	// A token not minted from a session (no sid) is not re-minted from
	// the request's session, nor cleared when that session is gone.
	plain := e.Token(t, "alice", func(c *bridge.Claims) {
		c.IssuedAt = jwt.NewNumericDate(e.Clock.Now().Add(-13 * time.Minute))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(e.Clock.Now().Add(2 * time.Minute))
	})
	resp = bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(plain), ckB)
	if resp.StatusCode != 200 || resp.Identity(t).Subject != "alice" {
		t.Errorf("token without sid: got %v %s, want 200 for alice", resp.StatusCode, resp.Body)
	}
	if c := resp.Cookie(bridge.DefaultCookieName); c != nil {
		t.Errorf("token without sid: id_token: got %v, want untouched", bridgetest.CookiesDesc(c))
	}
	gone, _ := e.Session(t, bridgetest.User("9"))
	if err := e.RDB.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	resp = bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(plain), gone)
	if c := resp.Cookie(bridge.DefaultCookieName); c != nil || resp.StatusCode != 200 {
		t.Errorf("token without sid, session gone: got %v, id_token %v; want 200, untouched", resp.StatusCode, bridgetest.CookiesDesc(c))
	}

	// Without a session cookie, nothing is read and nothing re-minted.
	bridgetest.ResetRedisStats(t, e.Srv)
	resp = bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(tokA.Value))
	if c := resp.Cookie(bridge.DefaultCookieName); c != nil || resp.StatusCode != 200 {
		t.Errorf("without session: got %v, id_token %v; want 200, untouched", resp.StatusCode, bridgetest.CookiesDesc(c))
	}
	if got := bridgetest.RedisCalls(t, e.Srv); len(got) != 0 {
		t.Errorf("Redis commands without session: got %v, want none", got)
	}
}

// TestInvalidJWTCookie: on dual, a refused JWT cookie is cleared and the
// session, if valid, authenticates.
func TestInvalidJWTCookie(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name    string
		token   func(t *testing.T, e *bridgetest.Env) string
		session bool
		rollout int
		status  int
		source  bridge.Source
		reason  bridge.Reason
		cleared bool // the response clears id_token
		minted  bool // the response sets a new id_token
	}{
		{name: "forged, session", token: mForgedToken, session: true, rollout: 0,
			status: 200, source: bridge.SourceSession, reason: bridge.ReasonCookieInvalid, cleared: true},
		{name: "garbage, session", token: func(*testing.T, *bridgetest.Env) string { return "not.a.token" }, session: true, rollout: 0,
			status: 200, source: bridge.SourceSession, reason: bridge.ReasonCookieInvalid, cleared: true},
		{name: "expired, session", token: mExpiredToken, session: true, rollout: 0,
			status: 200, source: bridge.SourceSession, reason: bridge.ReasonCookieExpired, cleared: true},
		{name: "forged, session, converted", token: mForgedToken, session: true, rollout: 100,
			status: 200, source: bridge.SourceSession, reason: bridge.ReasonCookieInvalid, minted: true},
		{name: "forged, no session", token: mForgedToken, rollout: 100,
			status: 401, source: bridge.SourceRejected, reason: bridge.ReasonCookieInvalid, cleared: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := bridgetest.NewEnvOn(t, srv, nil)
			if err := e.B.SetRolloutPercent(tt.rollout); err != nil {
				t.Fatal(err)
			}
			tok := tt.token(t, e)
			e.Secret(tok)
			cookies := []*http.Cookie{e.JWTCookie(tok)}
			if tt.session {
				ck, _ := e.Session(t, bridgetest.User("1"))
				cookies = append(cookies, ck)
			}
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			if tt.status == 200 {
				if got := resp.Identity(t); got.Source != tt.source.String() || got.Subject != "1" {
					t.Errorf("identity: got %s/%s, want 1/%v", got.Subject, got.Source, tt.source)
				}
			} else if got := resp.Reason(); got != tt.reason.String() {
				t.Errorf("reason: got %q, want %q", got, tt.reason)
			}
			var set []*http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == bridge.DefaultCookieName {
					set = append(set, c)
					e.Secret(c.Value)
				}
			}
			switch {
			case tt.cleared:
				if len(set) != 1 || set[0].MaxAge >= 0 || set[0].Value != "" {
					t.Errorf("id_token: got %v, want one clearing Set-Cookie", bridgetest.CookiesDesc(set...))
				}
			case tt.minted:
				if len(set) != 1 || set[0].MaxAge <= 0 {
					t.Errorf("id_token: got %v, want one new cookie and no clearing", bridgetest.CookiesDesc(set...))
				}
			}
			bridgetest.WantRequests(t, e.B, "/dual", map[bridge.Mode]map[bridge.Source]uint64{bridge.Dual: {tt.source: 1}})
			bridgetest.WantReasons(t, e.B, "/dual", map[bridge.Reason]uint64{tt.reason: 1})
		})
	}
	// On a legacy route the cookie is left alone.
	t.Run("legacy keeps it", func(t *testing.T) {
		e := bridgetest.NewEnvOn(t, srv, nil)
		ck, _ := e.Session(t, bridgetest.User("1"))
		tok := mForgedToken(t, e)
		resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/legacy"), nil, e.JWTCookie(tok), ck)
		if resp.StatusCode != 200 || resp.Identity(t).Source != "session" || len(resp.Cookies()) != 0 {
			t.Errorf("got %v %s cookies %v, want 200 from session, no Set-Cookie", resp.StatusCode, resp.Body, bridgetest.CookiesDesc(resp.Cookies()...))
		}
		bridgetest.WantReasons(t, e.B, "/legacy", map[bridge.Reason]uint64{bridge.ReasonCookieInvalid: 1})
	})
}

// mForgedToken is a well-formed token for "1" signed by an unknown key.
func mForgedToken(t *testing.T, e *bridgetest.Env) string {
	t.Helper()
	tok := bridgetest.NewKey(t).Mint(t, e.B, "1", nil)
	e.Secret(tok)
	return tok
}

// mExpiredToken is a token of e's key for "1" that expired 5 minutes ago.
func mExpiredToken(t *testing.T, e *bridgetest.Env) string {
	t.Helper()
	now := e.Clock.Now()
	return e.Token(t, "1", func(c *bridge.Claims) {
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
			e := bridgetest.NewEnvOn(t, srv, nil)
			ck, _ := e.Session(t, bridgetest.User("carol"))
			bridgetest.ResetRedisStats(t, e.Srv)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"),
				bridgetest.Bearer(e.Token(t, tt.bearerSub, nil)), e.JWTCookie(e.Token(t, tt.cookieSub, nil)), ck)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %v, want 200", resp.StatusCode)
			}
			if got := resp.Identity(t); got.Subject != tt.bearerSub || got.Source != "jwt_bearer" {
				t.Errorf("identity: got %s/%s, want %s/jwt_bearer", got.Subject, got.Source, tt.bearerSub)
			}
			bridgetest.WantRequests(t, e.B, "/dual", map[bridge.Mode]map[bridge.Source]uint64{bridge.Dual: {bridge.SourceJWTBearer: 1}})
			bridgetest.WantReasons(t, e.B, "/dual", map[bridge.Reason]uint64{bridge.ReasonSubjectMismatch: tt.mismatch})
			if got := strings.Contains(e.Logs.String(), "bearer wins"); got != (tt.mismatch == 1) {
				t.Errorf("mismatch logged: got %v, want %v", got, tt.mismatch == 1)
			}
			if got := bridgetest.RedisCalls(t, e.Srv); len(got) != 0 {
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
			e := bridgetest.NewEnv(t, func(e *bridgetest.Env, c *bridge.Config) {
				client := e.RDB
				if tt.blackhole {
					opt := e.Srv.Options()
					opt.Addr = redistest.Blackhole(t)
					client = redis.NewClient(opt)
					t.Cleanup(func() { _ = client.Close() })
				}
				if tt.boj {
					c.Sessions, _ = redisstore.BojSource(client, bridgetest.SessionName, bridgetest.KeyPairs()...)
				} else {
					c.Sessions = bridge.StoreSource(bridgetest.NewStore(t, client, nil), bridgetest.SessionName)
				}
				if !tt.cache {
					c.CacheSize = bridge.NoCache
				}
			})
			ck, id := e.Session(t, bridgetest.User("1"))
			bearerTok, cookieTok := e.Token(t, "1", nil), e.Token(t, "1", nil)
			c := e.TS.Client()
			if tt.cache {
				bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), bridgetest.Bearer(bearerTok))
				bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(cookieTok), ck)
			}
			switch {
			case tt.kill:
				e.Srv.Kill()
			case !tt.blackhole:
				e.Srv.Pause()
				defer e.Srv.Resume()
			}

			steps := []struct {
				name    string
				route   string
				hdr     http.Header
				cookies []*http.Cookie
				status  int
				source  string
			}{
				{name: "bearer", route: "/dual", hdr: bridgetest.Bearer(bearerTok), status: 200, source: "jwt_bearer"},
				{name: "bearer jwt route", route: "/jwt", hdr: bridgetest.Bearer(bearerTok), status: 200, source: "jwt_bearer"},
				{name: "cookie", route: "/dual", cookies: []*http.Cookie{e.JWTCookie(cookieTok), ck}, status: 200, source: "jwt_cookie"},
				{name: "session only", route: "/dual", cookies: []*http.Cookie{ck}, status: 503},
				{name: "session only legacy", route: "/legacy", cookies: []*http.Cookie{ck}, status: 200},
			}
			for _, s := range steps {
				start := time.Now()
				resp := bridgetest.Do(t, c, http.MethodGet, e.URL(s.route), s.hdr, s.cookies...)
				elapsed := time.Since(start)
				if resp.StatusCode != s.status {
					t.Errorf("%s: status: got %v, want %v (%s)", s.name, resp.StatusCode, s.status, resp.Body)
					continue
				}
				if s.source != "" {
					if got := resp.Identity(t).Source; got != s.source {
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
					if got := resp.Reason(); got != bridge.ReasonStoreUnavailable.String() {
						t.Errorf("%s: reason: got %q, want %q", s.name, got, bridge.ReasonStoreUnavailable)
					}
				}
				if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
					t.Errorf("%s: Set-Cookie headers: got %v, want none", s.name, len(got))
				}
			}
			if !tt.blackhole && !tt.kill {
				e.Srv.Resume()
			}
			if !tt.kill {
				n, err := e.RDB.Exists(context.Background(), "session_"+id).Result()
				if err != nil || n != 1 {
					t.Errorf("session key after the fault: got %v (%v), want it to exist", n, err)
				}
			}
			rc := bridgetest.RouteCounts(t, e.B, "/dual")
			if got := rc.Rejections.Of(bridge.ReasonStoreUnavailable); got != 1 {
				t.Errorf("session_store_unavailable on /dual: got %v, want 1", got)
			}
			if got := mInMode(rc, bridge.Dual).Of(bridge.SourceRejected); got != 1 {
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
		cred   mCred
		fetch  string // Sec-Fetch-Site
		origin string // Origin; "self" for the server's own
		status int
		source bridge.Source
	}{
		{name: "cookie cross-site", method: "POST", route: "/dual", cred: mCredJWTCookie, fetch: cross, status: 403, source: bridge.SourceRejected},
		{name: "cookie other origin", method: "POST", route: "/dual", cred: mCredJWTCookie, origin: "https://evil.example", status: 403, source: bridge.SourceRejected},
		{name: "session cross-site", method: "POST", route: "/dual", cred: mCredSession, fetch: cross, status: 403, source: bridge.SourceRejected},
		{name: "session other origin", method: "POST", route: "/dual", cred: mCredSession, origin: "https://evil.example", status: 403, source: bridge.SourceRejected},
		{name: "cookie jwt route cross-site", method: "POST", route: "/jwt", cred: mCredJWTCookie, fetch: cross, status: 403, source: bridge.SourceRejected},
		{name: "bearer cross-site", method: "POST", route: "/dual", cred: mCredBearer, fetch: cross, status: 200, source: bridge.SourceJWTBearer},
		{name: "bearer other origin", method: "POST", route: "/jwt", cred: mCredBearer, origin: "https://evil.example", status: 200, source: bridge.SourceJWTBearer},
		{name: "cookie same-origin", method: "POST", route: "/dual", cred: mCredJWTCookie, fetch: same, status: 200, source: bridge.SourceJWTCookie},
		{name: "cookie own origin", method: "POST", route: "/dual", cred: mCredJWTCookie, origin: "self", status: 200, source: bridge.SourceJWTCookie},
		{name: "cookie no headers", method: "POST", route: "/dual", cred: mCredJWTCookie, status: 200, source: bridge.SourceJWTCookie},
		{name: "session same-origin", method: "POST", route: "/dual", cred: mCredSession, fetch: same, status: 200, source: bridge.SourceSession},
		{name: "cookie cross-site GET", method: "GET", route: "/dual", cred: mCredJWTCookie, fetch: cross, status: 200, source: bridge.SourceJWTCookie},
		{name: "legacy cookie cross-site", method: "POST", route: "/legacy", cred: mCredJWTCookie, fetch: cross, status: 200, source: bridge.SourceJWTCookie},
		{name: "legacy session cross-site", method: "POST", route: "/legacy", cred: mCredSession, fetch: cross, status: 200, source: bridge.SourceSession},
		{name: "none cross-site", method: "POST", route: "/dual", cred: mCredNone, fetch: cross, status: 401, source: bridge.SourceAnonymous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bridgetest.NewEnvOn(t, srv, nil)
			hdr, cookies, _ := mCredRequest(t, e, tt.cred)
			if hdr == nil {
				hdr = http.Header{}
			}
			if tt.fetch != "" {
				hdr.Set("Sec-Fetch-Site", tt.fetch)
			}
			switch tt.origin {
			case "":
			case "self":
				hdr.Set("Origin", e.TS.URL)
			default:
				hdr.Set("Origin", tt.origin)
			}
			bridgetest.ResetRedisStats(t, e.Srv)
			resp := bridgetest.Do(t, e.TS.Client(), tt.method, e.URL(tt.route), hdr, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %v, want %v (%s)", resp.StatusCode, tt.status, resp.Body)
			}
			mode := bridgetest.Routes[tt.route]
			bridgetest.WantRequests(t, e.B, tt.route, map[bridge.Mode]map[bridge.Source]uint64{mode: {tt.source: 1}})
			if tt.status == 403 {
				if got := resp.Reason(); got != "cross_origin" {
					t.Errorf("reason: got %q, want cross_origin", got)
				}
				bridgetest.WantReasons(t, e.B, tt.route, map[bridge.Reason]uint64{bridge.ReasonCrossOrigin: 1})
				if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
					t.Errorf("Set-Cookie headers: got %v, want none", len(got))
				}
				if got := bridgetest.RedisCalls(t, e.Srv); len(got) != 0 {
					t.Errorf("Redis commands of a refused request: got %v, want none", got)
				}
			} else if tt.status == 200 {
				if got := resp.Identity(t).Source; got != tt.source.String() {
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
	e := bridgetest.NewEnv(t, nil)
	c := e.TS.Client()
	// Every credential made here, also recorded with e.Secret (which
	// NewEnv checks when the test ends).
	var secrets []string
	secret := func(s ...string) {
		e.Secret(s...)
		secrets = append(secrets, s...)
	}
	for _, cr := range []mCred{mCredBadBearer, mCredBadSession, mCredUnknownSession, mCredSession, mCredJWTCookie, mCredBearer} {
		for _, route := range []string{"/legacy", "/dual", "/jwt"} {
			hdr, cookies, made := mCredRequest(t, e, cr)
			secret(made...)
			resp := bridgetest.Do(t, c, http.MethodGet, e.URL(route), hdr, cookies...)
			for _, ck := range resp.Cookies() {
				secret(ck.Value)
			}
		}
	}
	// A guest session (no subject) authenticates nobody.
	ck, id := e.Session(t, map[any]any{"username": "nobody"})
	secret(ck.Value, id)
	if r := bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), nil, ck); r.StatusCode != http.StatusUnauthorized || r.Reason() != "no_credentials" {
		t.Errorf("guest session on dual: got %d %q, want 401 no_credentials", r.StatusCode, r.Reason())
	}
	// Subject mismatch (logged).
	a, b := e.Token(t, "a", nil), e.Token(t, "b", nil)
	secret(a, b)
	bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), bridgetest.Bearer(a), e.JWTCookie(b))
	// An expired and a forged cookie.
	for _, tok := range []string{mExpiredToken(t, e), mForgedToken(t, e)} {
		secret(tok)
		bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), nil, e.JWTCookie(tok))
		bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), bridgetest.Bearer(tok))
	}
	// A token put in the Authorization header under another scheme and a
	// cookie too large.
	tok := e.Token(t, "1", nil)
	secret(tok)
	bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), http.Header{"Authorization": {"Bearer " + tok + "x"}})
	secret(tok + "x")
	big := &http.Cookie{Name: bridgetest.SessionName, Value: strings.Repeat("A", 5000)}
	bridgetest.Do(t, c, http.MethodGet, e.URL("/dual"), nil, big)

	logs := e.Logs.String()
	for _, want := range []string{"credential refused", "bearer_invalid", "session_invalid", "session_unknown",
		"session_on_jwt_route", "bearer wins", "jwt_cookie_expired"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	// NewEnv's cleanup checks every recorded secret; check now too.
	if len(secrets) < 20 {
		t.Errorf("secrets recorded: got %v, want at least 20", len(secrets))
	}
	bridgetest.CheckNoSecrets(t, logs, secrets...)
}

// TestUnmatchedRoute: with the bridge wrapping the whole router from the
// outside, no mux route is current: every request is labelled
// "unmatched", which stays a single label.
func TestUnmatchedRoute(t *testing.T) {
	tests := []struct {
		name   string
		mode   bridge.Mode
		status int
		source bridge.Source
		reason map[bridge.Reason]uint64
	}{
		{name: "legacy", mode: bridge.Legacy, status: 404, source: bridge.SourceAnonymous},
		{name: "dual", mode: bridge.Dual, status: 401, source: bridge.SourceAnonymous, reason: map[bridge.Reason]uint64{bridge.ReasonNoCredentials: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			router := bridgetest.NewRouter(nil)
			b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
				c.Routes, c.Router, c.DefaultMode = bridgetest.Routes, router, tt.mode
			})
			ts := httptest.NewServer(b.Middleware(router))
			t.Cleanup(ts.Close)
			labels := len(b.Snapshot())

			resp := bridgetest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/nope", nil)
			if resp.StatusCode != tt.status {
				t.Errorf("status: got %v, want %v", resp.StatusCode, tt.status)
			}
			bridgetest.WantRequests(t, b, bridge.RouteUnmatched, map[bridge.Mode]map[bridge.Source]uint64{tt.mode: {tt.source: 1}})
			bridgetest.WantReasons(t, b, bridge.RouteUnmatched, tt.reason)
			for i := range 30 {
				bridgetest.Do(t, ts.Client(), http.MethodGet, fmt.Sprintf("%s/random/%d", ts.URL, i), nil)
			}
			if got := bridgetest.RouteCounts(t, b, bridge.RouteUnmatched).Requests().Of(tt.source); got != 31 {
				t.Errorf("unmatched requests: got %v, want 31", got)
			}
			if got := len(b.Snapshot()); got != labels {
				t.Errorf("route labels: got %v, want %v", got, labels)
			}
			// A path of a route is unmatched too when wrapped from outside.
			bridgetest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/legacy", nil)
			if got := bridgetest.RouteCounts(t, b, "/legacy").Requests(); got != (bridge.SourceCounts{}) {
				t.Errorf("/legacy counts: got %v, want none", got)
			}
		})
	}

	// With r.Use, mux runs no middleware for a path it does not match:
	// wrapping its NotFoundHandler counts those under "unmatched".
	t.Run("NotFoundHandler", func(t *testing.T) {
		router := bridgetest.NewRouter(nil)
		b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) { c.Routes, c.Router = bridgetest.Routes, router })
		router.Use(b.Middleware)
		router.NotFoundHandler = b.Middleware(http.NotFoundHandler())
		ts := httptest.NewServer(router)
		t.Cleanup(ts.Close)
		for i := range 3 {
			if got := bridgetest.Do(t, ts.Client(), http.MethodGet, fmt.Sprintf("%s/x/%d", ts.URL, i), nil).StatusCode; got != 404 {
				t.Errorf("status: got %v, want 404", got)
			}
		}
		bridgetest.Do(t, ts.Client(), http.MethodGet, ts.URL+"/legacy", nil)
		bridgetest.WantRequests(t, b, bridge.RouteUnmatched, map[bridge.Mode]map[bridge.Source]uint64{bridge.Legacy: {bridge.SourceAnonymous: 3}})
		bridgetest.WantRequests(t, b, "/legacy", map[bridge.Mode]map[bridge.Source]uint64{bridge.Legacy: {bridge.SourceAnonymous: 1}})
	})

	// Inside the router, routes are labelled by template, never raw path.
	t.Run("template", func(t *testing.T) {
		e := bridgetest.NewEnv(t, nil)
		labels := len(e.B.Snapshot())
		for i := range 5 {
			bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL(fmt.Sprintf("/dual/%d", i)), bridgetest.Bearer(e.Token(t, "1", nil)))
		}
		bridgetest.WantRequests(t, e.B, "/dual/{id}", map[bridge.Mode]map[bridge.Source]uint64{bridge.Dual: {bridge.SourceJWTBearer: 5}})
		if got := len(e.B.Snapshot()); got != labels {
			t.Errorf("route labels: got %v, want %v", got, labels)
		}
	})
}

// mChecked runs b.Check before next, answering a refusal with
// bridge.WriteError: the bridge on a router without gorilla/mux.
func mChecked(b *bridge.Bridge, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := b.Check(w, r)
		if err != nil {
			bridge.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestCheckServeMux: Check without gorilla/mux, on a net/http.ServeMux.
// A pattern route ("GET /api/me") is labelled by its pattern, takes its
// mode from Routes by that pattern and converts sessions there; a path
// the ServeMux does not match is labelled "unmatched".
func TestCheckServeMux(t *testing.T) {
	const route = "GET /api/me"
	e := bridgetest.NewEnv(t, func(_ *bridgetest.Env, c *bridge.Config) {
		c.Routes, c.Router = bridge.Routes{route: bridge.Dual}, nil
	})
	sm := http.NewServeMux()
	sm.Handle(route, mChecked(e.B, http.HandlerFunc(bridgetest.IdentityHandler)))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := sm.Handler(r); pattern == "" {
			// No pattern matches: Check sees no r.Pattern.
			mChecked(e.B, http.NotFoundHandler()).ServeHTTP(w, r)
			return
		}
		sm.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	c := ts.Client()
	if got := e.B.Mode(route); got != bridge.Dual {
		t.Errorf("Mode(%q): got %v, want dual", route, got)
	}

	// A session converts on the pattern route.
	ck, id := e.Session(t, bridgetest.User("1"))
	resp := bridgetest.Do(t, c, http.MethodGet, ts.URL+"/api/me", nil, ck)
	if resp.StatusCode != 200 {
		t.Fatalf("session: status: got %v, want 200 (%s)", resp.StatusCode, resp.Body)
	}
	if got := resp.Identity(t); got.Source != "session" || got.Subject != "1" {
		t.Errorf("session: identity: got %s/%s, want 1/session", got.Subject, got.Source)
	}
	tok := resp.Cookie(bridge.DefaultCookieName)
	if tok == nil || tok.MaxAge <= 0 {
		t.Fatalf("session: id_token: got %v, want a minted cookie", bridgetest.CookiesDesc(tok))
	}
	e.Secret(tok.Value)
	sid, _ := bridge.SIDHash(e.B.Config().SIDKey)
	if claims := bridgetest.TokenClaims(t, tok.Value); claims.Subject != "1" || claims.SID != sid(id) {
		t.Errorf("session: claims: got sub %q sid %q, want 1 and the session's sid", claims.Subject, claims.SID)
	}
	// The minted cookie authenticates the next request; no credential is
	// refused with 401.
	if got := bridgetest.Do(t, c, http.MethodGet, ts.URL+"/api/me", nil, &http.Cookie{Name: tok.Name, Value: tok.Value}).Identity(t).Source; got != "jwt_cookie" {
		t.Errorf("cookie: source: got %v, want jwt_cookie", got)
	}
	resp = bridgetest.Do(t, c, http.MethodGet, ts.URL+"/api/me", nil)
	if resp.StatusCode != 401 || resp.Reason() != "no_credentials" {
		t.Errorf("none: got %v %s, want 401 no_credentials", resp.StatusCode, resp.Body)
	}
	bridgetest.WantRequests(t, e.B, route, map[bridge.Mode]map[bridge.Source]uint64{
		bridge.Dual: {bridge.SourceSession: 1, bridge.SourceJWTCookie: 1, bridge.SourceAnonymous: 1},
	})
	bridgetest.WantReasons(t, e.B, route, map[bridge.Reason]uint64{bridge.ReasonNoCredentials: 1})
	if got := bridgetest.RouteCounts(t, e.B, route).Conversions; got != 1 {
		t.Errorf("conversions on %q: got %v, want 1", route, got)
	}

	// Paths the ServeMux does not match, with and without a session,
	// count under "unmatched" (legacy, the default mode), never under
	// their raw path.
	labels := len(e.B.Snapshot())
	for i := range 3 {
		if got := bridgetest.Do(t, c, http.MethodGet, fmt.Sprintf("%s/nope/%d", ts.URL, i), nil).StatusCode; got != 404 {
			t.Errorf("unmatched: status: got %v, want 404", got)
		}
	}
	if got := bridgetest.Do(t, c, http.MethodGet, ts.URL+"/api/other", nil, ck).StatusCode; got != 404 {
		t.Errorf("unmatched with session: status: got %v, want 404", got)
	}
	bridgetest.WantRequests(t, e.B, bridge.RouteUnmatched, map[bridge.Mode]map[bridge.Source]uint64{
		bridge.Legacy: {bridge.SourceAnonymous: 3, bridge.SourceSession: 1},
	})
	bridgetest.WantReasons(t, e.B, bridge.RouteUnmatched, nil)
	if got := len(e.B.Snapshot()); got != labels {
		t.Errorf("route labels: got %v, want %v", got, labels)
	}
	bridgetest.WantRequests(t, e.B, route, map[bridge.Mode]map[bridge.Source]uint64{
		bridge.Dual: {bridge.SourceSession: 1, bridge.SourceJWTCookie: 1, bridge.SourceAnonymous: 1},
	})
}
