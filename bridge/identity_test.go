// Tests of what the middleware hands out: an Identity is the handler's
// own value (a cached token serves every request that presents it, and
// nothing a handler does to its Identity reaches the next request), a
// Rejection always has a message, and a refused token's reason follows
// the table of reason.go.
package bridge

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// idFixture is a Bridge with a jwt route and a legacy route whose handler
// (set per test) receives the identity, on a mux router.
type idFixture struct {
	b      *Bridge
	clock  *webtest.Clock
	store  *memStore
	router *mux.Router
	// handle is called by both routes; it reads the request's identity.
	handle func(r *http.Request)
}

func newIDFixture(t *testing.T) *idFixture {
	t.Helper()
	f := &idFixture{clock: webtest.NewClock(), store: newMemStore(), router: mux.NewRouter()}
	h := func(w http.ResponseWriter, r *http.Request) { f.handle(r) }
	f.router.HandleFunc("/jwt", h)
	f.router.HandleFunc("/legacy", h)
	f.b = newTestBridge(t, func(c *Config) {
		c.Sessions = StoreSource(f.store, testSessionName)
		c.Routes = Routes{"/jwt": JWT, "/legacy": Legacy}
		c.Router = f.router
		c.Now = f.clock.Now
	})
	f.router.Use(f.b.Middleware)
	return f
}

// serve sends GET path with the credential and returns the status.
func (f *idFixture) serve(path string, hdr http.Header, cookies ...*http.Cookie) int {
	r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
	for k, v := range hdr {
		r.Header[k] = v
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, r)
	return w.Code
}

// idWant is what a handler must see of the test token's identity.
type idWant struct {
	subject, name string
	roles         []string
	source        Source
	token         string
	claims        *Claims // nil: no claims
	session       map[any]any
}

// check compares id with w, field by field, through the getters.
func (w idWant) check(t *testing.T, what string, id Identity) {
	t.Helper()
	if id.Subject() != w.subject || id.Name() != w.name || id.Source() != w.source || id.Token() != w.token {
		t.Errorf("%s: got subject %q name %q source %v token %t, want %q %q %v %t",
			what, id.Subject(), id.Name(), id.Source(), id.Token() == w.token, w.subject, w.name, w.source, true)
	}
	if got := id.Roles(); !slices.Equal(got, w.roles) {
		t.Errorf("%s: Roles got %q, want %q", what, got, w.roles)
	}
	for _, r := range w.roles {
		if !id.HasRole(r) {
			t.Errorf("%s: HasRole(%q) got false, want true", what, r)
		}
	}
	for _, r := range []string{"root", "superuser", ""} {
		if id.HasRole(r) {
			t.Errorf("%s: HasRole(%q) got true, want false", what, r)
		}
	}
	c, ok := id.Claims()
	switch {
	case ok != (w.claims != nil):
		t.Errorf("%s: Claims ok got %v, want %v", what, ok, w.claims != nil)
	case !ok:
		if !id.ExpiresAt().IsZero() {
			t.Errorf("%s: ExpiresAt got %v, want zero", what, id.ExpiresAt())
		}
	default:
		want := w.claims
		if c.Subject != want.Subject || c.Name != want.Name || c.Issuer != want.Issuer || c.ID != want.ID || c.SID != want.SID {
			t.Errorf("%s: claims got sub %q name %q iss %q jti %q sid %q, want %q %q %q %q %q",
				what, c.Subject, c.Name, c.Issuer, c.ID, c.SID, want.Subject, want.Name, want.Issuer, want.ID, want.SID)
		}
		if !slices.Equal(c.Roles, want.Roles) || !slices.Equal(c.Audience, want.Audience) {
			t.Errorf("%s: claims got roles %q aud %q, want %q %q", what, c.Roles, c.Audience, want.Roles, want.Audience)
		}
		for _, d := range []struct {
			name      string
			got, want *jwt.NumericDate
		}{{"exp", c.ExpiresAt, want.ExpiresAt}, {"iat", c.IssuedAt, want.IssuedAt}, {"nbf", c.NotBefore, want.NotBefore}} {
			if d.got == nil || !d.got.Equal(d.want.Time) {
				t.Errorf("%s: claim %s got %v, want %v", what, d.name, d.got, d.want)
			}
		}
		if !id.ExpiresAt().Equal(want.ExpiresAt.Time) {
			t.Errorf("%s: ExpiresAt got %v, want %v", what, id.ExpiresAt(), want.ExpiresAt.Time)
		}
	}
	switch {
	case w.session == nil && w.source != SourceSession:
		if id.Session() != nil {
			t.Errorf("%s: Session got %v, want nil", what, id.Session())
		}
	case w.session != nil:
		s := id.Session()
		if s["user_id"] != w.session["user_id"] || s["username"] != w.session["username"] {
			t.Errorf("%s: Session got %v, want %v", what, s, w.session)
		}
		if got, _ := s["roles"].([]string); !slices.Equal(got, w.session["roles"].([]string)) {
			t.Errorf("%s: Session roles got %q, want %q", what, got, w.session["roles"])
		}
	}
}

// abuse does to id everything a handler can: it writes into every slice
// and map the getters return, appends to them, changes the claims' copy,
// and overwrites the value itself. (Writing through the claims' date
// pointers is TestIdentityClaimsDates.)
func abuse(id Identity) {
	roles := id.Roles()
	if len(roles) > 0 {
		roles[0] = "root"
	}
	roles = append(roles, "superuser")
	full := roles[:cap(roles)]
	for i := range full {
		full[i] = "root"
	}
	if c, ok := id.Claims(); ok {
		c.Subject, c.Name, c.Issuer, c.ID, c.SID = "mallory", "Mallory", "https://evil.test", "evil-jti", "evil-sid"
		if len(c.Roles) > 0 {
			c.Roles[0] = "root"
		}
		c.Roles = append(c.Roles, "superuser")
		if len(c.Audience) > 0 {
			c.Audience[0] = "evil-api"
		}
		c.Audience = append(c.Audience, "evil-api")
		c.ExpiresAt, c.IssuedAt, c.NotBefore = jwt.NewNumericDate(time.Unix(2, 0)), nil, nil
	}
	if s := id.Session(); s != nil {
		if r, ok := s["roles"].([]string); ok && len(r) > 0 {
			r[0] = "root"
		}
		s["user_id"] = "mallory"
		s["roles"] = []string{"root"}
		delete(s, "username")
	}
	id = Identity{} // the handler's own copy: the context's is untouched
	_ = id
}

// TestIdentityIsTheHandlersOwn: two requests presenting the same token
// (cached after the first) through the middleware; the first handler does
// everything it can to the Identity it received, the second still sees
// the original subject, roles and claims. So does a second IdentityFrom
// in the first request, and so does the cache.
func TestIdentityIsTheHandlersOwn(t *testing.T) {
	f := newIDFixture(t)
	now := f.clock.Now()
	claims := testClaims(f.b, "alice")
	claims.Name, claims.Roles, claims.SID = "Alice", []string{"user", "admin"}, "sid-alice"
	claims.Audience = jwt.ClaimStrings{testAudience, "other-api"}
	tok, err := mint(f.b.cfg.SigningKey, claims)
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := saveSession(t, f.store, testUser("7"))

	for _, tc := range []struct {
		name    string
		path    string
		hdr     http.Header
		cookies []*http.Cookie
		want    idWant
	}{
		{name: "bearer", path: "/jwt", hdr: webtest.Bearer(tok), want: idWant{subject: "alice", name: "Alice", roles: []string{"user", "admin"},
			source: SourceJWTBearer, token: tok, claims: claims}},
		{name: "JWT cookie", path: "/jwt", cookies: []*http.Cookie{{Name: DefaultCookieName, Value: tok}},
			want: idWant{subject: "alice", name: "Alice", roles: []string{"user", "admin"}, source: SourceJWTCookie, token: tok, claims: claims}},
		{name: "legacy session", path: "/legacy", cookies: []*http.Cookie{sess},
			want: idWant{subject: "7", name: "user7", roles: []string{"user"}, source: SourceSession, session: testUser("7")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			f.handle = func(r *http.Request) {
				calls++
				id, ok := IdentityFrom(r.Context())
				if !ok {
					t.Fatalf("request %d: no identity", calls)
				}
				tc.want.check(t, fmt.Sprintf("request %d", calls), id)
				if calls > 1 {
					return
				}
				abuse(id)
				// The request's own identity is untouched too, but for
				// the session values, which are the request's own (read
				// for it by the store): a handler that writes into them
				// sees its writes.
				again, _ := IdentityFrom(r.Context())
				w := tc.want
				w.session = nil
				w.check(t, "IdentityFrom again after the abuse", again)
				abuse(again)
			}
			for i := range 2 {
				if code := f.serve(tc.path, tc.hdr, tc.cookies...); code != http.StatusOK {
					t.Fatalf("request %d: status got %d, want 200", i+1, code)
				}
			}
			if calls != 2 {
				t.Fatalf("handler calls: got %d, want 2", calls)
			}
			if tc.want.claims == nil {
				return
			}
			// The cache still holds the token as it was verified.
			e := f.b.verifier.cache.get(tok, now)
			if e == nil {
				t.Fatal("token not cached")
			}
			cached := e.bearer
			if tc.want.source == SourceJWTCookie {
				cached = e.cookie
			}
			tc.want.check(t, "cached entry", cached)
			if e.claims.Subject != "alice" || !slices.Equal(e.claims.Roles, []string{"user", "admin"}) ||
				!e.claims.ExpiresAt.Equal(claims.ExpiresAt.Time) || !e.exp.Equal(claims.ExpiresAt.Time) {
				t.Errorf("cached claims changed: sub %q roles %q exp %v", e.claims.Subject, e.claims.Roles, e.claims.ExpiresAt)
			}
		})
	}
}

// TestIdentityIsTheHandlersOwnConcurrent is the same from many requests at
// once (meant for -race): each handler checks the identity it got, then
// abuses it, while the others read theirs from the same cached token.
func TestIdentityIsTheHandlersOwnConcurrent(t *testing.T) {
	f := newIDFixture(t)
	claims := testClaims(f.b, "alice")
	claims.Name, claims.Roles, claims.SID = "Alice", []string{"user", "admin"}, "sid-alice"
	tok, err := mint(f.b.cfg.SigningKey, claims)
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := saveSession(t, f.store, testUser("7"))
	want := map[Source]idWant{
		SourceJWTBearer: {subject: "alice", name: "Alice", roles: []string{"user", "admin"}, source: SourceJWTBearer, token: tok, claims: claims},
		SourceJWTCookie: {subject: "alice", name: "Alice", roles: []string{"user", "admin"}, source: SourceJWTCookie, token: tok, claims: claims},
		SourceSession:   {subject: "7", name: "user7", roles: []string{"user"}, source: SourceSession, session: testUser("7")},
	}
	f.handle = func(r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		if !ok {
			t.Error("no identity")
			return
		}
		w, ok := want[id.Source()]
		if !ok {
			t.Errorf("source %v", id.Source())
			return
		}
		w.check(t, "concurrent request", id)
		abuse(id)
	}
	// A first request caches the token.
	if code := f.serve("/jwt", webtest.Bearer(tok)); code != http.StatusOK {
		t.Fatalf("first request: status got %d, want 200", code)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				var code int
				switch (g + i) % 3 {
				case 0:
					code = f.serve("/jwt", webtest.Bearer(tok))
				case 1:
					code = f.serve("/jwt", nil, &http.Cookie{Name: DefaultCookieName, Value: tok})
				default:
					code = f.serve("/legacy", nil, sess)
				}
				if code != http.StatusOK {
					t.Errorf("status got %d, want 200", code)
					return
				}
			}
		})
	}
	wg.Wait()
	f.handle = func(r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		want[SourceJWTBearer].check(t, "after the abuse", id)
	}
	if code := f.serve("/jwt", webtest.Bearer(tok)); code != http.StatusOK {
		t.Fatalf("last request: status got %d, want 200", code)
	}
}

// TestIdentityClaimsDates: Claims returns a deep copy, dates included:
// writing through the copy's exp, iat and nbf pointers changes nothing
// for the next request presenting the same (cached) token, nor for the
// cache, whose claims also decide the sliding re-mint (nearExpiry).
func TestIdentityClaimsDates(t *testing.T) {
	f := newIDFixture(t)
	claims := testClaims(f.b, "alice")
	tok, err := mint(f.b.cfg.SigningKey, claims)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	f.handle = func(r *http.Request) {
		calls++
		id, _ := IdentityFrom(r.Context())
		c, ok := id.Claims()
		if !ok || c.ExpiresAt == nil || c.IssuedAt == nil || c.NotBefore == nil {
			t.Fatalf("request %d: claims %v, %+v", calls, ok, c)
		}
		for _, d := range []struct {
			name      string
			got, want *jwt.NumericDate
		}{{"exp", c.ExpiresAt, claims.ExpiresAt}, {"iat", c.IssuedAt, claims.IssuedAt}, {"nbf", c.NotBefore, claims.NotBefore}} {
			if !d.got.Equal(d.want.Time) {
				t.Errorf("request %d: claim %s got %v, want %v", calls, d.name, d.got, d.want)
			}
			d.got.Time = time.Unix(1, 0) // through the copy's pointer
		}
	}
	for _, hdr := range []http.Header{webtest.Bearer(tok), webtest.Bearer(tok), nil} {
		var cookies []*http.Cookie
		if hdr == nil {
			cookies = []*http.Cookie{{Name: DefaultCookieName, Value: tok}}
		}
		if code := f.serve("/jwt", hdr, cookies...); code != http.StatusOK {
			t.Fatalf("status got %d, want 200", code)
		}
	}
	e := f.b.verifier.cache.get(tok, f.clock.Now())
	if e == nil {
		t.Fatal("token not cached")
	}
	if !e.claims.ExpiresAt.Equal(claims.ExpiresAt.Time) || !e.claims.IssuedAt.Equal(claims.IssuedAt.Time) || !e.claims.NotBefore.Equal(claims.NotBefore.Time) {
		t.Errorf("cached claims' dates changed: exp %v iat %v nbf %v", e.claims.ExpiresAt, e.claims.IssuedAt, e.claims.NotBefore)
	}
}

// TestIdentityZero: without the middleware there is no identity, and the
// zero Identity's getters answer zero values without panicking.
func TestIdentityZero(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if id, ok := IdentityFrom(r.Context()); ok || id.Subject() != "" {
		t.Errorf("IdentityFrom without the middleware: got %v, %v, want zero, false", id.Subject(), ok)
	}
	if _, ok := IdentityFrom(withIdentity(r.Context(), nil)); ok {
		t.Error("IdentityFrom of a nil identity: got true, want false")
	}
	var id Identity
	if id.Roles() != nil || id.HasRole("") || id.Session() != nil || id.Token() != "" || !id.ExpiresAt().IsZero() || id.Source() != SourceAnonymous {
		t.Error("zero Identity: getters answer non-zero values")
	}
	if _, ok := id.Claims(); ok {
		t.Error("zero Identity: Claims ok got true, want false")
	}
}

// TestRejectionError: a Rejection without a cause still has a message (its
// reason), and WriteError answers it.
func TestRejectionError(t *testing.T) {
	cases := []struct {
		rej  *Rejection
		want string
	}{
		{&Rejection{Reason: ReasonNoCredentials}, "no_credentials"},
		{&Rejection{Status: http.StatusUnauthorized, Reason: ReasonNoCredentials}, "no_credentials"},
		{&Rejection{}, "bearer_invalid"},
		{&Rejection{Reason: numReasons}, "unknown"},
		{&Rejection{Reason: ReasonNoCredentials, Err: ErrNoCredentials}, "no_credentials: bridge: no credentials"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			var got string
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Error panicked: %v", p)
					}
				}()
				got = c.rej.Error()
			}()
			if got != c.want {
				t.Errorf("Error: got %q, want %q", got, c.want)
			}
			if c.rej.Err == nil && c.rej.Unwrap() != nil {
				t.Errorf("Unwrap: got %v, want nil", c.rej.Unwrap())
			}
		})
	}
	w := httptest.NewRecorder()
	WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), &Rejection{Status: http.StatusUnauthorized, Reason: ReasonNoCredentials})
	if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("WriteError of a Rejection without a cause: status %d, WWW-Authenticate %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if want := `{"error":"Unauthorized","reason":"no_credentials"}` + "\n"; w.Body.String() != want {
		t.Errorf("WriteError body: got %q, want %q", w.Body, want)
	}
}

// TestTokenReason: a refused token's reason by where it came from
// (bearer or cookie) and why (invalid, expired, revoked), for the errors
// the verifier really returns and for wrapped and unknown ones.
func TestTokenReason(t *testing.T) {
	f := newTokFixture(t, nil)
	verifyErr := func(tok string) error {
		_, err := f.b.verifier.verify(tok)
		if err == nil {
			t.Fatal("token accepted")
		}
		return err
	}
	expired := verifyErr(f.valid(t, member("exp", f.clock.Now().Add(-time.Hour).Unix())))
	forged := verifyErr(signJWS(t, newTestKey(t), f.header(f.key), f.claims()))
	malformed := verifyErr("not.a.token")
	f.b.Deny(Revocation{JTI: "jti-revoked", Until: f.clock.Now().Add(time.Hour)})
	revoked := verifyErr(f.valid(t, member("jti", "jti-revoked")))

	type why int
	const (
		invalid why = iota
		isExpired
		isRevoked
	)
	errs := []struct {
		name string
		err  error
		why  why
	}{
		{"forged", forged, invalid},
		{"malformed", malformed, invalid},
		{"ErrInvalidToken", ErrInvalidToken, invalid},
		{"unknown error", errors.New("something else"), invalid},
		{"expired", expired, isExpired},
		{"ErrTokenExpired wrapped", fmt.Errorf("outer: %w", ErrTokenExpired), isExpired},
		{"revoked", revoked, isRevoked},
		{"ErrTokenRevoked joined", errors.Join(errors.New("x"), ErrTokenRevoked), isRevoked},
	}
	want := map[int]map[why]Reason{
		fromBearer: {invalid: ReasonBearerInvalid, isExpired: ReasonBearerExpired, isRevoked: ReasonBearerRevoked},
		fromCookie: {invalid: ReasonCookieInvalid, isExpired: ReasonCookieExpired, isRevoked: ReasonCookieRevoked},
	}
	labels := map[int]map[why]string{
		fromBearer: {invalid: "bearer_invalid", isExpired: "bearer_expired", isRevoked: "bearer_revoked"},
		fromCookie: {invalid: "jwt_cookie_invalid", isExpired: "jwt_cookie_expired", isRevoked: "jwt_cookie_revoked"},
	}
	for _, from := range []int{fromBearer, fromCookie} {
		table := tokenReasons[from]
		inTable := map[why]Reason{invalid: table.invalid, isExpired: table.expired, isRevoked: table.revoked}
		for _, e := range errs {
			got := tokenReason(e.err, from)
			if w := want[from][e.why]; got != w || got != inTable[e.why] {
				t.Errorf("tokenReason(%s, from %d): got %v, want %v (table %v)", e.name, from, got, w, inTable[e.why])
			}
			if got.String() != labels[from][e.why] {
				t.Errorf("tokenReason(%s, from %d): label got %q, want %q", e.name, from, got, labels[from][e.why])
			}
		}
	}
}
