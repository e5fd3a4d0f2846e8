// Tests of Bridge.Transport (transport.go): the current identity's JWT on
// outgoing requests. The legacy sessions live in an in-memory store
// (newTestEnv): nothing here depends on Redis.
package bridge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/gorilla/mux"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// trDownstream records the Authorization header of every request.
type trDownstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
	// redirect, when set, answers 302 to it.
	redirect atomic.Pointer[string]
}

func newTrDownstream(t *testing.T) *trDownstream {
	d := &trDownstream{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.seen = append(d.seen, r.Header.Get("Authorization"))
		d.mu.Unlock()
		if to := d.redirect.Load(); to != nil && r.URL.Path == "/" {
			http.Redirect(w, r, *to, http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// take returns the headers seen since the last call.
func (d *trDownstream) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.seen
	d.seen = nil
	return s
}

// trApp is the app under test: routes /legacy, /dual, /jwt (modes of
// testRoutes) whose handler calls the downstream service with
// http.Client{Transport: b.Transport(nil)} and the request's context.
// ?preset=1 sets an Authorization header of its own.
func trApp(t *testing.T, e *testEnv, downstream string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(downstream)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: e.b.Transport(nil, u.Host), Timeout: 5 * time.Second}
	call := func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequest(http.MethodGet, downstream+"/", nil)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		req = req.WithContext(r.Context())
		if r.URL.Query().Get("preset") != "" {
			req.Header.Set("Authorization", "Bearer caller-chosen")
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "downstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		identityHandler(w, r)
	}
	router := mux.NewRouter()
	for _, p := range []string{"/legacy", "/dual", "/jwt"} {
		router.HandleFunc(p, call)
	}
	router.Use(e.b.Middleware)
	ts := httptest.NewTLSServer(router)
	t.Cleanup(ts.Close)
	return ts
}

func TestTransport(t *testing.T) {
	e := newTestEnv(t, nil)
	down := newTrDownstream(t)
	app := trApp(t, e, down.srv.URL)
	client := webtest.NewJarClient(t, app)
	jwks := rotJWKS(t, e.b.JWKSHandler())

	sess, sessID := e.session(t, testUser("1"))
	tok := e.token(t, "1", nil)

	// The JWT the dual route converts the session into.
	r := webtest.Do(t, client, "GET", app.URL+"/dual", nil, sess)
	converted := ""
	if ck := r.Cookie(DefaultCookieName); ck != nil {
		converted = ck.Value
	}
	if r.StatusCode != 200 || converted == "" {
		t.Fatalf("conversion: %d, Set-Cookie %q", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	if got := down.take(); len(got) != 1 || got[0] != "Bearer "+converted {
		t.Errorf("converted session: downstream saw %q, want the converted token", got)
	}
	e.secret(converted)

	const minted = "minted"
	for _, tc := range []struct {
		name    string
		path    string
		hdr     http.Header
		cookies []*http.Cookie
		want    string // the Authorization seen downstream; minted: a fresh token
	}{
		{name: "bearer on a jwt route", path: "/jwt", hdr: webtest.Bearer(tok), want: "Bearer " + tok},
		{name: "bearer on a dual route", path: "/dual", hdr: webtest.Bearer(tok), want: "Bearer " + tok},
		{name: "bearer on a legacy route", path: "/legacy", hdr: webtest.Bearer(tok), want: "Bearer " + tok},
		{name: "bearer wins over a session", path: "/legacy", hdr: webtest.Bearer(tok), cookies: []*http.Cookie{sess}, want: "Bearer " + tok},
		{name: "JWT cookie", path: "/jwt", cookies: []*http.Cookie{e.jwtCookie(tok)}, want: "Bearer " + tok},
		{name: "session on a legacy route (unconverted)", path: "/legacy", cookies: []*http.Cookie{sess}, want: minted},
		{name: "session on a dual route (converted)", path: "/dual", cookies: []*http.Cookie{sess}, want: "converted"},
		{name: "no identity", path: "/legacy", want: ""},
		{name: "refused bearer on a legacy route", path: "/legacy", hdr: webtest.Bearer("not.a.token"), want: ""},
		{name: "existing Authorization left alone", path: "/jwt?preset=1", hdr: webtest.Bearer(tok), want: "Bearer caller-chosen"},
		{name: "existing Authorization left alone, session", path: "/legacy?preset=1", cookies: []*http.Cookie{sess}, want: "Bearer caller-chosen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Transport: client.Transport} // no jar
			r := webtest.Do(t, c, "GET", app.URL+tc.path, tc.hdr, tc.cookies...)
			if r.StatusCode != 200 {
				t.Fatalf("status %d: %s", r.StatusCode, r.Body)
			}
			got := down.take()
			if len(got) != 1 {
				t.Fatalf("downstream saw %d requests", len(got))
			}
			switch tc.want {
			case minted:
				checkDownstreamToken(t, e, jwks, got[0], sessID)
			case "converted":
				ck := r.Cookie(DefaultCookieName)
				if ck == nil || got[0] != "Bearer "+ck.Value {
					t.Errorf("downstream saw %.20q…, want the token just converted", got[0])
				}
				if ck != nil {
					e.secret(ck.Value)
				}
			default:
				if got[0] != tc.want {
					t.Errorf("downstream saw %.30q, want %.30q", got[0], tc.want)
				}
			}
		})
	}

	// Each call of an unconverted session gets its own short token.
	c := &http.Client{Transport: client.Transport}
	webtest.Do(t, c, "GET", app.URL+"/legacy", nil, sess)
	webtest.Do(t, c, "GET", app.URL+"/legacy", nil, sess)
	got := down.take()
	if len(got) != 2 || got[0] == got[1] {
		t.Errorf("two calls, tokens %.20q", got)
	}
	for _, h := range got {
		e.secret(strings.TrimPrefix(h, "Bearer "))
	}
}

// checkDownstreamToken checks a token minted for an unconverted session:
// it verifies against the bridge's JWKS (independently of the bridge), has
// sub, sid (the keyed hash, not the raw ID), and lives at most a minute.
func checkDownstreamToken(t *testing.T, e *testEnv, jwks map[string]jwkset.JWK, header, sessID string) {
	t.Helper()
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || tok == "" {
		t.Fatalf("downstream saw %q, want a minted bearer token", header)
	}
	e.secret(tok)
	c, err := rotVerifyJWKS(jwks, tok)
	if err != nil {
		t.Fatalf("minted token fails verification against the JWKS: %v", err)
	}
	if err := verifyErr(e.b, tok); err != nil {
		t.Errorf("the bridge refuses its own minted token: %v", err)
	}
	if c.Subject != "1" {
		t.Errorf("sub %q", c.Subject)
	}
	if c.SID != e.b.sids.sid(sessID) || c.SID == "" {
		t.Errorf("sid %q, want the keyed hash of the session ID", c.SID)
	}
	if strings.Contains(tok, sessID) || c.SID == sessID {
		t.Error("the token carries the raw session ID")
	}
	if c.ExpiresAt == nil || c.IssuedAt == nil || c.ID == "" {
		t.Fatalf("exp %v iat %v jti %q", c.ExpiresAt, c.IssuedAt, c.ID)
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt.Time); life > DownstreamTokenTTL || life <= 0 {
		t.Errorf("lifetime %v, want at most %v", life, DownstreamTokenTTL)
	}
	if c.ExpiresAt.After(e.clock.Now().Add(DownstreamTokenTTL)) {
		t.Errorf("exp %v more than a minute ahead", c.ExpiresAt)
	}
	if kid := rotHeader(t, tok)["kid"]; kid != e.b.cfg.SigningKey.KID() {
		t.Errorf("kid %v", kid)
	}
}

// TestTransportRedirect: the token follows a redirect on the same host,
// never one to another host.
func TestTransportRedirect(t *testing.T) {
	e := newTestEnv(t, nil)
	other := newTrDownstream(t)
	down := newTrDownstream(t)
	app := trApp(t, e, down.srv.URL)
	tok := e.token(t, "1", nil)
	c := &http.Client{Transport: webtest.NewJarClient(t, app).Transport}

	for _, tc := range []struct {
		name      string
		to        string
		wantOther string // at the redirect target
		target    *trDownstream
	}{
		{name: "to another host", to: other.srv.URL + "/landing", target: other, wantOther: ""},
		{name: "on the same host", to: down.srv.URL + "/landing", target: down, wantOther: "Bearer " + tok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			down.redirect.Store(&tc.to)
			defer down.redirect.Store(nil)
			r := webtest.Do(t, c, "GET", app.URL+"/jwt", webtest.Bearer(tok))
			if r.StatusCode != 200 {
				t.Fatalf("status %d: %s", r.StatusCode, r.Body)
			}
			var first, second []string
			if tc.target == down {
				got := down.take()
				if len(got) != 2 {
					t.Fatalf("downstream saw %d requests", len(got))
				}
				first, second = got[:1], got[1:]
			} else {
				first, second = down.take(), other.take()
			}
			if len(first) != 1 || first[0] != "Bearer "+tok {
				t.Errorf("first hop saw %.30q", first)
			}
			if len(second) != 1 || second[0] != tc.wantOther {
				t.Errorf("redirect target saw %.30q, want %.30q", second, tc.wantOther)
			}
		})
	}
}

// TestTransportDirect: the round tripper on its own, with identities put
// in the context by hand.
func TestTransportDirect(t *testing.T) {
	b := newTestBridge(t, nil)
	var seen atomic.Pointer[string]
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		h := r.Header.Get("Authorization")
		seen.Store(&h)
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	})
	tr := b.Transport(base, "svc.internal")

	t.Run("identity with a token", func(t *testing.T) {
		req := httptest.NewRequest("GET", "http://svc.internal/", nil)
		req = req.WithContext(withIdentity(req.Context(), &Identity{subject: "x", source: SourceJWTBearer, token: "tok-x"}))
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got := *seen.Load(); got != "Bearer tok-x" {
			t.Errorf("sent %q", got)
		}
		if req.Header.Get("Authorization") != "" {
			t.Error("the caller's request was modified")
		}
	})
	t.Run("a host not listed", func(t *testing.T) {
		for _, target := range []string{"http://elsewhere.example/", "http://svc.internal.evil/", "http://svc.internal:8443/"} {
			req := httptest.NewRequest("GET", target, nil)
			req = req.WithContext(withIdentity(req.Context(), &Identity{subject: "x", source: SourceJWTBearer, token: "tok-x"}))
			if _, err := tr.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if target != "http://svc.internal:8443/" {
				if got := *seen.Load(); got != "" {
					t.Errorf("%s: sent %q, want no token to a host not listed", target, got)
				}
				continue
			}
			// Listed by name without a port: any port of that host.
			if got := *seen.Load(); got != "Bearer tok-x" {
				t.Errorf("%s: sent %q, want the token (listed by name)", target, got)
			}
		}
		only := b.Transport(base, "svc.internal:9000")
		req := httptest.NewRequest("GET", "http://svc.internal:8443/", nil)
		req = req.WithContext(withIdentity(req.Context(), &Identity{subject: "x", source: SourceJWTBearer, token: "tok-x"}))
		if _, err := only.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got := *seen.Load(); got != "" {
			t.Errorf("host:port listed, another port: sent %q, want nothing", got)
		}
		none := b.Transport(base)
		req = httptest.NewRequest("GET", "http://svc.internal/", nil)
		req = req.WithContext(withIdentity(req.Context(), &Identity{subject: "x", source: SourceJWTBearer, token: "tok-x"}))
		if _, err := none.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got := *seen.Load(); got != "" {
			t.Errorf("no host listed: sent %q, want nothing", got)
		}
	})
	t.Run("nil identity", func(t *testing.T) {
		req := httptest.NewRequest("GET", "http://svc.internal/", nil)
		req = req.WithContext(withIdentity(context.Background(), nil))
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got := *seen.Load(); got != "" {
			t.Errorf("sent %q", got)
		}
	})
	t.Run("session without a subject: error, body closed", func(t *testing.T) {
		body := &trBody{Reader: strings.NewReader("payload")}
		req := httptest.NewRequest("POST", "http://svc.internal/", body)
		req = req.WithContext(withIdentity(req.Context(), &Identity{source: SourceSession, session: map[any]any{"username": "nobody"}}))
		seen.Store(nil)
		_, err := tr.RoundTrip(req)
		if err == nil {
			t.Fatal("no error")
		}
		if !errors.Is(err, errNoSubject) {
			t.Errorf("error %v", err)
		}
		if seen.Load() != nil {
			t.Error("the request was sent")
		}
		if !body.closed.Load() {
			t.Error("request body not closed on error")
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type trBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trBody) Close() error {
	b.closed.Store(true)
	return nil
}
