package bridge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// idpEnv is a Bridge trusting a fake IdP (its keys loaded) behind the test
// router, on a session store of its own.
type idpEnv struct {
	*testEnv
	idp *fakeIdP
	key *idpKey
}

func newIdPEnv(t *testing.T, mod func(*TrustedIssuer)) *idpEnv {
	t.Helper()
	k := idpRSAKey(t, 0, "rsa-1")
	idp := newFakeIdP(t, k)
	e := newTestEnv(t, func(_ *testEnv, c *Config) {
		c.TrustedIssuers = []TrustedIssuer{idpTrusted(idp, mod)}
	})
	goRun(t, e.b)
	waitIdPAccepted(t, e.b, k, 3*time.Second)
	return &idpEnv{testEnv: e, idp: idp, key: k}
}

// identityOf sends tok as a bearer token to route and returns what the
// handler saw, failing unless the answer is want.
func (e *idpEnv) identityOf(t *testing.T, route, tok string, want int) identityBody {
	t.Helper()
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+route, webtest.Bearer(tok))
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", route, resp.StatusCode, resp.Body, want)
	}
	if want != http.StatusOK {
		return identityBody{}
	}
	return identityOf(t, resp)
}

// TestIdPIdentityIsItsOwn replays issue 13's attack: an IdP token whose sub
// is a local user's ID and whose roles claim says admin is neither that
// user nor an admin.
func TestIdPIdentityIsItsOwn(t *testing.T) {
	e := newIdPEnv(t, nil)
	tok := idpToken(t, e.key, func(c *Claims, _ map[string]any) {
		c.Subject = "2"
		c.Roles = []string{"admin"}
		c.Name = "bob"
	})
	e.secret(tok)

	id := e.identityOf(t, "/jwt", tok, http.StatusOK)
	if id.Subject != "" || len(id.Roles) != 0 {
		t.Errorf("IdP token with sub 2 and roles [admin]: local subject %q roles %v, want none", id.Subject, id.Roles)
	}

	// What a handler sees through the API.
	var got Identity
	h := e.b.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = IdentityFrom(r.Context())
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	h.ServeHTTP(httptest.NewRecorder(), r)
	c, ok := got.Claims()
	switch {
	case got.Subject() != "":
		t.Errorf("Subject() = %q, want empty for an unlinked IdP identity", got.Subject())
	case got.Issuer() != idpIssuer:
		t.Errorf("Issuer() = %q, want %q", got.Issuer(), idpIssuer)
	case got.HasRole("admin") || len(got.Roles()) != 0:
		t.Errorf("Roles() = %v, want none: an IdP's roles claim is not a local role", got.Roles())
	case !ok || c.Subject != "2" || !slices.Equal(c.Roles, []string{"admin"}):
		t.Errorf("Claims() = %+v, %v: want the IdP's own claims, readable as such", c, ok)
	}

	// The bridge's own tokens and sessions stay local, under its issuer.
	own := e.token(t, "2", func(c *Claims) { c.Roles = []string{"user", "admin"} })
	if id := e.identityOf(t, "/jwt", own, http.StatusOK); id.Subject != "2" || !slices.Contains(id.Roles, "admin") {
		t.Errorf("own token: %+v", id)
	}
	ck, _ := e.session(t, testUser("7"))
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/legacy", nil, ck)
	if id := identityOf(t, resp); id.Subject != "7" {
		t.Errorf("session identity: %+v", id)
	}
}

// TestTokenWithoutSubjectRefused: a token with an empty or missing sub
// authenticates nobody, from the IdP or the bridge's own key.
func TestTokenWithoutSubjectRefused(t *testing.T) {
	e := newIdPEnv(t, nil)
	for name, tok := range map[string]string{
		"IdP, empty sub":     idpToken(t, e.key, func(c *Claims, _ map[string]any) { c.Subject = "" }),
		"IdP, no sub at all": idpMapToken(t, e.key, map[string]any{"sub": nil}),
		"own key, no sub":    e.token(t, "", nil),
	} {
		t.Run(name, func(t *testing.T) {
			err := verifyErr(e.b, tok)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "no sub") {
				t.Errorf("verify: %v, want ErrInvalidToken (no sub)", err)
			}
		})
	}
	before := routeCounts(t, e.b, "/jwt").Rejections.Of(ReasonBearerInvalid)
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt",
		webtest.Bearer(idpToken(t, e.key, func(c *Claims, _ map[string]any) { c.Subject = "" })))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Body, `"bearer_invalid"`) {
		t.Errorf("GET /jwt with an IdP token without sub: %d %s, want 401 bearer_invalid", resp.StatusCode, resp.Body)
	}
	if got := routeCounts(t, e.b, "/jwt").Rejections.Of(ReasonBearerInvalid); got != before+1 {
		t.Errorf("bearer_invalid on /jwt: got %d, want %d", got, before+1)
	}
}

// TestIdPLink: the app's explicit link (the demo's: a verified email)
// makes an IdP identity a local user with the user's local roles, once
// per token; without it, or unverified, the identity stays the IdP's.
func TestIdPLink(t *testing.T) {
	var calls atomic.Int32
	var fail atomic.Bool
	e := newIdPEnv(t, func(ti *TrustedIssuer) {
		ti.Link = func(ctx context.Context, c Claims) (LocalUser, bool, error) {
			calls.Add(1)
			if ctx == nil {
				t.Error("Link called without a context")
			}
			if fail.Load() {
				return LocalUser{}, false, errors.New("user database down")
			}
			if c.EmailVerified && c.Email == "bob@example.com" {
				return LocalUser{Subject: "2", Name: "bob", Roles: []string{"user", "admin"}}, true, nil
			}
			return LocalUser{}, false, nil
		}
	})
	verified := idpToken(t, e.key, func(c *Claims, _ map[string]any) {
		c.Subject, c.Email, c.EmailVerified = "auth0|bob", "bob@example.com", true
	})
	unverified := idpToken(t, e.key, func(c *Claims, _ map[string]any) {
		c.Subject, c.Email = "auth0|mallory", "bob@example.com"
	})
	e.secret(verified, unverified)

	for i := range 3 {
		id := e.identityOf(t, "/jwt", verified, http.StatusOK)
		if id.Subject != "2" || id.Name != "bob" || !slices.Equal(id.Roles, []string{"user", "admin"}) {
			t.Fatalf("request %d, verified email: %+v, want local user 2 with roles user, admin", i, id)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Link called %d times for one token, want 1 (the link is cached with the token)", n)
	}
	if id := e.identityOf(t, "/jwt", unverified, http.StatusOK); id.Subject != "" || len(id.Roles) != 0 {
		t.Errorf("unverified email: %+v, want the IdP's own identity", id)
	}

	// A Link that fails leaves the identity unlinked for that request, logs
	// why, and is asked again next time.
	fail.Store(true)
	other := idpToken(t, e.key, func(c *Claims, _ map[string]any) {
		c.Subject, c.Email, c.EmailVerified = "auth0|bob-2", "bob@example.com", true
	})
	e.secret(other)
	if id := e.identityOf(t, "/jwt", other, http.StatusOK); id.Subject != "" {
		t.Errorf("Link failing: %+v, want unlinked", id)
	}
	if !strings.Contains(e.logs.String(), "identity not linked") {
		t.Errorf("Link failing: nothing logged:\n%s", e.logs.String())
	}
	fail.Store(false)
	if id := e.identityOf(t, "/jwt", other, http.StatusOK); id.Subject != "2" {
		t.Errorf("Link back: %+v, want local user 2", id)
	}

	// email_verified as the string "true" (Amazon Cognito) links too; any
	// other string does not, and neither refuses the token.
	for v, want := range map[any]string{"true": "2", "yes": "", false: ""} {
		tok := idpMapToken(t, e.key, map[string]any{
			"sub": "cognito|bob", "email": "bob@example.com", "email_verified": v,
		})
		e.secret(tok)
		if id := e.identityOf(t, "/jwt", tok, http.StatusOK); id.Subject != want {
			t.Errorf("email_verified %#v: subject %q, want %q", v, id.Subject, want)
		}
	}
}

// idpMapToken signs the claims of idpClaims, overridden by extra, with k:
// claims of any JSON type, as a real IdP may send them.
func idpMapToken(t *testing.T, k *idpKey, extra map[string]any) string {
	t.Helper()
	c := idpClaims("idp-user")
	m := jwt.MapClaims{
		"iss": c.Issuer, "sub": c.Subject, "aud": []string(c.Audience), "jti": c.ID,
		"iat": c.IssuedAt.Unix(), "nbf": c.NotBefore.Unix(), "exp": c.ExpiresAt.Unix(),
	}
	for name, v := range extra {
		m[name] = v
	}
	tok := jwt.NewWithClaims(k.method, m)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// TestIdPKeyRemovedStopsCachedTokens replays issue 13's point 5: a token
// verified (and cached) before the IdP dropped its key from the JWKS is
// refused after the next periodic refresh, while the IdP's other key and
// the bridge's own cached tokens keep working.
func TestIdPKeyRemovedStopsCachedTokens(t *testing.T) {
	k1 := idpRSAKey(t, 0, "rsa-1")
	k2 := idpECKey(t, 0, "ec-2")
	idp := newFakeIdP(t, k1, k2)
	e := newTestEnv(t, func(_ *testEnv, c *Config) {
		c.TrustedIssuers = []TrustedIssuer{idpTrusted(idp, func(ti *TrustedIssuer) {
			ti.RefreshInterval = 100 * time.Millisecond
			ti.UnknownKIDInterval = time.Hour // only the periodic refresh may learn the removal
		})}
	})
	goRun(t, e.b)
	waitIdPAccepted(t, e.b, k1, 3*time.Second)
	dropped, kept := idpToken(t, k1, nil), idpToken(t, k2, nil)
	own := e.token(t, "1", nil)
	e.secret(dropped, kept)
	for _, tok := range []string{dropped, kept, own} {
		if err := verifyErr(e.b, tok); err != nil {
			t.Fatalf("before the removal: %v", err)
		}
	}
	idp.publish(k2)
	d := idpEventually(t, 3*time.Second, "cached token of the removed key refused", func() bool {
		return errors.Is(verifyErr(e.b, dropped), ErrInvalidToken)
	})
	t.Logf("refused %v after the JWKS dropped its key (refresh every 100ms)", d)
	resp := webtest.Do(t, e.ts.Client(), http.MethodGet, e.ts.URL+"/jwt", webtest.Bearer(dropped))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /jwt with the dropped key's token: %d, want 401", resp.StatusCode)
	}
	for name, tok := range map[string]string{"IdP's kept key": kept, "own key": own} {
		if err := verifyErr(e.b, tok); err != nil {
			t.Errorf("%s: refused after another key's removal: %v", name, err)
		}
	}
}
