// Tests of routers shaped as real apps build them (issue 14): a router
// mounted as a route's handler, subrouters, templates with regular
// expressions, Config.Routes checked against the router, and the bridge's
// own endpoints next to a catch-all route.
package bridge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/sessionbridge/sessionbridge/internal/webtest"
)

// passThrough is an app middleware, as subrouters and mounted routers
// carry their own.
func passThrough(next http.Handler) http.Handler { return next }

// spaHandler is a single-page app's catch-all.
func spaHandler(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("spa")) }

// apiResources are the JSON API's resources: five routes each, so the API
// router holds 25 endpoints besides its subrouter and its mount.
var apiResources = []string{"posts", "comments", "users", "tags", "orders"}

// realRouter is a router as real monoliths build theirs: pages on the
// root (one with a regex variable), an admin subrouter with its own
// middleware, a JSON API on a router of its own mounted under /api/ (with
// its middleware, a versioned subrouter and a billing router mounted in
// it), and a single-page app's catch-all last. With own, the bridge's
// endpoints are declared by name before the catch-all, without handlers.
func realRouter(own bool) (root, api *mux.Router) {
	root = mux.NewRouter()
	root.HandleFunc("/healthz", identityHandler).Methods(http.MethodGet)
	root.HandleFunc("/login", identityHandler).Methods(http.MethodGet)
	root.HandleFunc("/login", identityHandler).Methods(http.MethodPost)
	root.HandleFunc("/logout", identityHandler).Methods(http.MethodPost).Name("logout")
	root.HandleFunc("/posts/{page:[0-9]+}", identityHandler).Methods(http.MethodGet)

	admin := root.PathPrefix("/admin").Subrouter()
	admin.Use(passThrough)
	admin.HandleFunc("/users", identityHandler)
	admin.HandleFunc("/users/{id:[0-9]+}", identityHandler)

	api = mux.NewRouter()
	api.Use(passThrough)
	for _, res := range apiResources {
		base := "/api/" + res
		api.HandleFunc(base, identityHandler).Methods(http.MethodGet, http.MethodPost)
		api.HandleFunc(base+"/search", identityHandler).Methods(http.MethodGet)
		api.HandleFunc(base+"/{id:[0-9]+}", identityHandler).Methods(http.MethodGet, http.MethodPut, http.MethodDelete)
		api.HandleFunc(base+"/{id:[0-9]+}/history", identityHandler).Methods(http.MethodGet)
		api.HandleFunc(base+"/{id:[0-9]+}/{format:(?:csv|json)}", identityHandler).Methods(http.MethodGet)
	}
	v2 := api.PathPrefix("/api/v2").Subrouter()
	v2.HandleFunc("/me", identityHandler)
	billing := mux.NewRouter()
	billing.HandleFunc("/api/billing/invoices/{id}", identityHandler)
	api.PathPrefix("/api/billing/").Handler(billing)
	root.PathPrefix("/api/").Handler(api)

	if own {
		root.Path("/.well-known/jwks.json").Methods(http.MethodGet, http.MethodHead).Name("jwks")
		root.Path("/auth/cookie").Name("auth_cookie")
	}
	root.PathPrefix("/").HandlerFunc(spaHandler)
	return root, api
}

// serve sends an anonymous request through h and returns its status.
func serve(h http.Handler, method, path string) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, "https://app.test"+path, nil))
	return w.Code
}

// labels returns the route labels of b's snapshot with their request
// counts.
func labels(b *Bridge) map[string]uint64 {
	out := map[string]uint64{}
	for _, rc := range b.Snapshot() {
		out[rc.Route] = rc.Requests().Total()
	}
	return out
}

// TestMountedRouterLabels: requests through a router mounted as a route's
// handler are counted, and given their mode, by the template of the route
// that router matches, not by the mount's prefix; subrouters' prefixes are
// no routes; a request the mounted router matches to nothing is unmatched.
func TestMountedRouterLabels(t *testing.T) {
	root, _ := realRouter(false)
	b := newTestBridge(t, func(c *Config) {
		c.Router = root
		c.Routes = Routes{"/api/posts/{id}": Dual, "/admin/users": JWT, "/api/billing/invoices/{id}": JWT}
	})
	root.Use(b.Middleware)
	for _, tc := range []struct {
		method, path string
		status       int
		label        string
	}{
		{"GET", "/healthz", 200, "/healthz"},
		{"GET", "/api/posts", 200, "/api/posts"},
		{"POST", "/api/comments", 200, "/api/comments"},
		{"GET", "/api/posts/7", 401, "/api/posts/{id}"}, // dual: the inner route's mode
		{"GET", "/api/tags/7/history", 200, "/api/tags/{id}/history"},
		{"GET", "/api/orders/search", 200, "/api/orders/search"},
		{"GET", "/api/users/3/csv", 200, "/api/users/{id}/{format}"},
		{"GET", "/api/v2/me", 200, "/api/v2/me"},
		{"GET", "/api/billing/invoices/9", 401, "/api/billing/invoices/{id}"}, // a router mounted in the mounted one
		{"GET", "/admin/users", 401, "/admin/users"},
		{"GET", "/admin/users/5", 200, "/admin/users/{id}"},
		{"GET", "/api/nothing", 404, RouteUnmatched},
		{"PATCH", "/api/posts", 405, RouteUnmatched},
		{"GET", "/somewhere/in/the/spa", 200, "/"},
	} {
		before := labels(b)[tc.label]
		if got := serve(root, tc.method, tc.path); got != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, got, tc.status)
		}
		if got := labels(b)[tc.label] - before; got != 1 {
			t.Errorf("%s %s: %d requests counted under %q, want 1; labels %v", tc.method, tc.path, got, tc.label, labels(b))
		}
	}
	got := labels(b)
	for _, prefix := range []string{"/api/", "/admin", "/api/v2", "/api/billing/"} {
		if _, ok := got[prefix]; ok {
			t.Errorf("the prefix %q is a route label: %v", prefix, got)
		}
	}
	n := 0
	for label := range got {
		if strings.HasPrefix(label, "/api/") {
			n++
		}
	}
	if want := 5*len(apiResources) + 2; n != want {
		t.Errorf("%d /api/ labels, want %d (every endpoint its own): %v", n, want, got)
	}
}

// TestMountedRouterLearnt: a mounted router is learnt by New's walk or,
// without Config.Router, by the first request through it; a route added to
// it afterwards is still counted under its own template.
func TestMountedRouterLearnt(t *testing.T) {
	for _, walked := range []bool{true, false} {
		t.Run(map[bool]string{true: "walked by New", false: "no Config.Router"}[walked], func(t *testing.T) {
			root, api := realRouter(false)
			b := newTestBridge(t, func(c *Config) {
				if walked {
					c.Router = root
				}
			})
			root.Use(b.Middleware)
			serve(root, "GET", "/api/posts/1")
			api.HandleFunc("/api/late", identityHandler) // after the walk, before the catch-all of api (none)
			for range 2 {
				if got := serve(root, "GET", "/api/late"); got != 200 {
					t.Fatalf("GET /api/late: status %d", got)
				}
			}
			got := labels(b)
			if got["/api/posts/{id}"] != 1 || got["/api/late"] != 2 || got["/api/"] != 0 {
				t.Errorf("labels %v, want /api/posts/{id} 1, /api/late 2", got)
			}
		})
	}
}

// TestSubrouterPrefixNotARoute: New's walk gives every route a label but
// no subrouter's or mount's prefix.
func TestSubrouterPrefixNotARoute(t *testing.T) {
	root, _ := realRouter(false)
	b := newTestBridge(t, func(c *Config) { c.Router = root })
	got := labels(b)
	for _, want := range []string{"/admin/users", "/admin/users/{id}", "/api/v2/me", "/api/billing/invoices/{id}", "/posts/{page}", "/"} {
		if _, ok := got[want]; !ok {
			t.Errorf("route %q has no label: %v", want, got)
		}
	}
	for _, prefix := range []string{"/admin", "/api/", "/api/v2", "/api/billing/"} {
		if _, ok := got[prefix]; ok {
			t.Errorf("prefix %q has a label", prefix)
		}
	}
}

func TestRouteLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/posts/{page:[0-9]+}", "/posts/{page}"},
		{"/posts/{page}", "/posts/{page}"},
		{"/a/{id:[0-9]{1,3}}/b/{name:[a-z]+}", "/a/{id}/b/{name}"},
		{"/files/{path:.*}", "/files/{path}"},
		{"/{x:(?:a|b)}{y}", "/{x}{y}"},
		{"GET /api/orders/{id}", "GET /api/orders/{id}"},
		{"/files/{rest...}", "/files/{rest...}"},
		{"example.com:8080/x", "example.com:8080/x"},
		{"/bad/{id:[0-9]+", "/bad/{id:[0-9]+"},
		{"/bad/}{id:1}", "/bad/}{id:1}"},
		{RouteUnmatched, RouteUnmatched},
	} {
		if got := RouteLabel(tc.in); got != tc.want {
			t.Errorf("RouteLabel(%q): got %q, want %q", tc.in, got, tc.want)
		}
		if again := RouteLabel(tc.want); again != tc.want {
			t.Errorf("RouteLabel(%q): got %q, want it unchanged", tc.want, again)
		}
	}
}

// TestRegexTemplates: a template with a regular expression is labelled
// without it, and addressed both ways in Config.Routes, PublicRoutes and
// the run-time modes.
func TestRegexTemplates(t *testing.T) {
	const written, label = "/posts/{page:[0-9]+}", "/posts/{page}"
	root, _ := realRouter(false)
	b := newTestBridge(t, func(c *Config) {
		c.Router = root
		c.Routes = Routes{written: Dual}
		c.PublicRoutes = []string{"/admin/users/{id:[0-9]+}"}
	})
	root.Use(b.Middleware)
	for _, route := range []string{written, label} {
		if got := b.Mode(route); got != Dual {
			t.Errorf("Mode(%q): got %v, want dual", route, got)
		}
	}
	if got := routeCounts(t, b, label).Mode; got != Dual {
		t.Errorf("snapshot mode of %q: got %v, want dual", label, got)
	}
	if _, ok := b.Config().Routes[label]; !ok {
		t.Errorf("Config().Routes %v: want it keyed by %q", b.Config().Routes, label)
	}
	if err := b.SetMode(label, JWT); err != nil {
		t.Fatal(err)
	}
	if got := b.Mode(written); got != JWT {
		t.Errorf("Mode(%q) after SetMode(%q): got %v, want jwt", written, label, got)
	}
	serve(root, "GET", "/posts/3")
	wantRequests(t, b, label, map[Mode]map[Source]uint64{JWT: {SourceAnonymous: 1}})
	wantReasons(t, b, label, map[Reason]uint64{ReasonNoCredentials: 1})
	b.ResetMode(written)
	if got := b.Mode(label); got != Dual {
		t.Errorf("Mode(%q) after ResetMode(%q): got %v, want dual", label, written, got)
	}
	for _, route := range []string{"/admin/users/{id}", "/admin/users/{id:[0-9]+}"} {
		if err := b.SetMode(route, JWT); err == nil || !strings.Contains(err.Error(), "public") {
			t.Errorf("SetMode(%q, jwt) on a public route: got %v, want an error", route, err)
		}
	}

	_, err := New(Config{SigningKey: newTestKey(t), Issuer: testIssuer, Audience: testAudience,
		Routes: Routes{written: Dual, label: JWT}})
	if err == nil || !strings.Contains(err.Error(), "one route") {
		t.Errorf("New with %q and %q in two modes: got %v, want an error", written, label, err)
	}
}

// TestParseRoutesRegex: a pattern may hold the list's separators.
func TestParseRoutesRegex(t *testing.T) {
	got, err := ParseRoutes("/a/{id:[0-9]{1,3}}=dual, /b/{x:(?:k=v)}=jwt,/c=legacy")
	if err != nil {
		t.Fatal(err)
	}
	want := Routes{"/a/{id:[0-9]{1,3}}": Dual, "/b/{x:(?:k=v)}": JWT, "/c": Legacy}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, m := range want {
		if got[k] != m {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	if _, err := ParseRoutes("/a=dual=jwt"); err == nil {
		t.Error(`ParseRoutes("/a=dual=jwt"): no error`)
	}
}

// TestRoutesCheckedAtNew: with Config.Router set, an entry of Routes or
// PublicRoutes that names no route is an error listing the closest ones.
func TestRoutesCheckedAtNew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes Routes
		public []string
		want   []string // substrings of the error, in order; none: no error
	}{
		{name: "routes of every kind", routes: Routes{
			"/api/posts/{id}": Dual, "/api/posts/{id:[0-9]+}": Dual, "/admin/users": JWT, "/api/v2/me": JWT,
			"/api/billing/invoices/{id}": JWT, "/": Legacy, RouteUnmatched: Dual,
		}, public: []string{"/healthz", "/login"}},
		{name: "typo", routes: Routes{"/api/post/{id}": Dual},
			want: []string{`Config.Routes: "/api/post/{id}" names no route of Config.Router (closest: "/api/posts/{id}"`}},
		{name: "var name", routes: Routes{"/api/posts/{postID}": Dual},
			want: []string{`closest: "/api/posts/{id}"`}},
		{name: "public typo", public: []string{"/helthz"},
			want: []string{`Config.PublicRoutes: "/helthz" names no route of Config.Router (closest: "/healthz"`}},
		{name: "subrouter prefix", routes: Routes{"/admin": JWT},
			want: []string{`"/admin" is the prefix of a subrouter or mounted router, not a route (closest: "/admin/users"`}},
		{name: "mount prefix", routes: Routes{"/api/": JWT},
			want: []string{`"/api/" is the prefix of a subrouter or mounted router`}},
		{name: "every bad entry", routes: Routes{"/nope": Dual, "/api/x": JWT}, public: []string{"/helthz"},
			want: []string{`"/helthz"`, `"/api/x"`, `"/nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := realRouter(false)
			_, err := New(Config{SigningKey: newTestKey(t), Issuer: testIssuer, Audience: testAudience,
				Router: root, Routes: tc.routes, PublicRoutes: tc.public})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New: no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error %q: want %q in it", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
	// Without a router, nothing to check against.
	if _, err := New(Config{SigningKey: newTestKey(t), Issuer: testIssuer, Audience: testAudience,
		Routes: Routes{"/anything": Dual}}); err != nil {
		t.Errorf("New without Router: %v", err)
	}
}

// TestDuplicateTemplatesWarned: routes that share a label where one
// request could match either are warned about once, at New; one template
// split by method is not.
func TestDuplicateTemplatesWarned(t *testing.T) {
	r := mux.NewRouter()
	r.HandleFunc("/login", identityHandler).Methods(http.MethodGet)
	r.HandleFunc("/login", identityHandler).Methods(http.MethodPost)
	r.HandleFunc("/healthz", identityHandler)
	r.HandleFunc("/healthz", identityHandler)
	r.HandleFunc("/files/{id:[0-9]+}", identityHandler).Methods(http.MethodGet)
	r.HandleFunc("/files/{id:[a-z]+}", identityHandler).Methods(http.MethodGet, http.MethodHead)
	r.Host("a.example.com").Path("/home").HandlerFunc(identityHandler)
	r.Host("b.example.com").Path("/home").HandlerFunc(identityHandler)
	b := newTestBridge(t, func(c *Config) { c.Router = r })
	logs := logsOf(b).String()
	if n := strings.Count(logs, "routes share a path template"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs)
	}
	for _, want := range []string{
		"/healthz (2 routes: /healthz, /healthz)",
		"/files/{id} (2 routes: /files/{id:[0-9]+}, /files/{id:[a-z]+})",
		"/home (2 routes",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("warning lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "/login") {
		t.Errorf("GET and POST /login warned about:\n%s", logs)
	}
}

// TestOwnEndpointsWithCatchAll: with a catch-all route last, the bridge's
// own endpoints must come before it, and New (which checks Config.Routes
// against the router) before their handlers. Either the router declares
// them by name before the catch-all and they get their handlers after
// New (counted, public), or they are served on a router in front of the
// app's (outside the middleware: no PublicRoutes entry, not counted). The
// app's logout is wrapped in place. Mounted on the app's router after
// New, they would be shadowed by the catch-all.
func TestOwnEndpointsWithCatchAll(t *testing.T) {
	for _, front := range []bool{false, true} {
		t.Run(map[bool]string{false: "declared before the catch-all", true: "on a router in front"}[front], func(t *testing.T) {
			r, _ := realRouter(!front)
			public := []string{"/", "/login", "/logout", "/healthz"}
			if !front {
				public = append(public, "/.well-known/jwks.json", "/auth/cookie")
			}
			b := newTestBridge(t, func(c *Config) {
				c.Router = r
				c.DefaultMode = JWT
				c.PublicRoutes = public
			})
			var h http.Handler = r
			if front {
				f := mux.NewRouter()
				f.Handle("/.well-known/jwks.json", b.JWKSHandler())
				f.Handle("/auth/cookie", b.CookieExchangeHandler())
				f.PathPrefix("/").Handler(r)
				h = f
			} else {
				r.Get("jwks").Handler(b.JWKSHandler())
				r.Get("auth_cookie").Handler(b.CookieExchangeHandler())
			}
			r.Use(b.Middleware)
			logout := r.Get("logout")
			appLogout := logout.GetHandler()
			logout.Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if err := b.Logout(w, req); err != nil {
					WriteError(w, req, &Rejection{Status: http.StatusServiceUnavailable, Reason: ReasonStoreUnavailable, Err: err})
					return
				}
				appLogout.ServeHTTP(w, req)
			}))
			ts := httptest.NewTLSServer(h)
			t.Cleanup(ts.Close)
			c := webtest.NewJarClient(t, ts)

			jwks := webtest.Do(t, c, "GET", ts.URL+"/.well-known/jwks.json", nil)
			if jwks.StatusCode != 200 || !strings.Contains(jwks.Body, b.cfg.SigningKey.KID()) {
				t.Fatalf("JWKS: %d %q", jwks.StatusCode, jwks.Body)
			}
			if resp := webtest.Do(t, c, "GET", ts.URL+"/settings/profile", nil); resp.StatusCode != 200 || resp.Body != "spa" {
				t.Errorf("the catch-all: %d %q", resp.StatusCode, resp.Body)
			}
			if resp := webtest.Do(t, c, "GET", ts.URL+"/api/users", nil); resp.StatusCode != 401 {
				t.Errorf("jwt route without a token: %d", resp.StatusCode)
			}
			tok := mintTestToken(t, b, "42", nil)
			if resp := webtest.Do(t, c, "POST", ts.URL+"/auth/cookie", webtest.Bearer(tok)); resp.StatusCode != 204 {
				t.Fatalf("cookie exchange: %d %q", resp.StatusCode, resp.Body)
			}
			if resp := webtest.Do(t, c, "GET", ts.URL+"/api/users", nil); resp.StatusCode != 200 || identityOf(t, resp).Source != "jwt_cookie" {
				t.Errorf("with the exchanged cookie: %d %q", resp.StatusCode, resp.Body)
			}
			if resp := webtest.Do(t, c, "POST", ts.URL+"/logout", nil); resp.StatusCode != 200 {
				t.Errorf("logout: %d %q", resp.StatusCode, resp.Body)
			}
			if resp := webtest.Do(t, c, "GET", ts.URL+"/api/users", webtest.Bearer(tok)); resp.StatusCode != 401 {
				t.Errorf("the token after logout: %d", resp.StatusCode)
			}
			got := labels(b)
			if got["/"] != 1 || got["/api/users"] != 3 || got["/logout"] != 1 {
				t.Errorf("labels %v, want / 1, /api/users 3, /logout 1", got)
			}
			for _, own := range []string{"/.well-known/jwks.json", "/auth/cookie"} {
				if want := map[bool]uint64{false: 1, true: 0}[front]; got[own] != want {
					t.Errorf("%s counted %d times, want %d: %v", own, got[own], want, got)
				}
			}

			// The problem this avoids: on the app's router after New, the
			// catch-all matches first.
			r.Handle("/.well-known/openid-configuration", b.JWKSHandler())
			if resp := webtest.Do(t, c, "GET", ts.URL+"/.well-known/openid-configuration", nil); resp.Body != "spa" {
				t.Errorf("a route added after the catch-all: %d %q, want the catch-all's", resp.StatusCode, resp.Body)
			}
		})
	}
}

// TestMountedMatchesAsMux: the route the bridge finds in a mounted router
// is the one the router itself serves, whatever its routes match on
// (methods, headers, queries, hosts, a MatcherFunc, subrouters, StrictSlash,
// UseEncodedPath, a router mounted in it).
func TestMountedMatchesAsMux(t *testing.T) {
	api := mux.NewRouter().StrictSlash(true)
	api.Use(passThrough)
	api.HandleFunc("/api/items/{id}", identityHandler).Headers("X-Version", "2")
	api.HandleFunc("/api/items/special", identityHandler)
	api.HandleFunc("/api/items/{id:[0-9]+}", identityHandler).Methods(http.MethodGet)
	api.HandleFunc("/api/items/{id:[0-9]+}/", identityHandler).Methods(http.MethodPut)
	api.HandleFunc("/api/search", identityHandler).Queries("q", "{q}")
	api.HandleFunc("/api/search", identityHandler)
	api.HandleFunc("/api/feature", identityHandler).MatcherFunc(func(r *http.Request, _ *mux.RouteMatch) bool {
		return r.Header.Get("X-Beta") == "1"
	})
	api.HandleFunc("/api/{rest:.*}", identityHandler).Methods(http.MethodDelete)
	admin := api.Host("admin.example.com").Subrouter()
	admin.Use(passThrough)
	admin.HandleFunc("/api/feature", identityHandler)
	v1 := api.PathPrefix("/api/v1").Subrouter()
	v1.HandleFunc("/", identityHandler)
	v1.HandleFunc("/things/{id}", identityHandler)
	enc := mux.NewRouter().UseEncodedPath()
	enc.HandleFunc("/api/enc/{name}", identityHandler)
	enc.HandleFunc("/api/enc/{a}/{b}", identityHandler)
	api.PathPrefix("/api/enc/").Handler(enc)
	api.HandleFunc("/api/feature", identityHandler).Methods(http.MethodGet)

	// muxRoute is the route the mounted routers serve r with, by mux.
	muxRoute := func(router *mux.Router, r *http.Request) *mux.Route {
		for {
			var m mux.RouteMatch
			if !router.Match(r, &m) || m.MatchErr != nil || m.Route == nil {
				return nil
			}
			inner, ok := m.Route.GetHandler().(*mux.Router)
			if !ok {
				return m.Route
			}
			router = inner
		}
	}
	for _, walked := range []bool{true, false} {
		table := newRouteTable(nil, Legacy)
		if walked {
			root := mux.NewRouter()
			root.PathPrefix("/api/").Handler(api)
			table.remember(walkRouter(root))
		}
		for _, tc := range []struct {
			method, target string
			header         http.Header
		}{
			{"GET", "/api/items/7", nil},
			{"GET", "/api/items/7", http.Header{"X-Version": {"2"}}},
			{"GET", "/api/items/special", nil},
			{"GET", "/api/items/special", http.Header{"X-Version": {"2"}}},
			{"PUT", "/api/items/7", nil},
			{"PUT", "/api/items/7/", nil},
			{"GET", "/api/items/7/", nil},
			{"POST", "/api/items/7", nil},
			{"GET", "/api/search?q=go", nil},
			{"GET", "/api/search", nil},
			{"GET", "/api/feature", nil},
			{"POST", "/api/feature", http.Header{"X-Beta": {"1"}}},
			{"POST", "https://admin.example.com/api/feature", nil},
			{"DELETE", "/api/anything/at/all", nil},
			{"GET", "/api/v1", nil},
			{"GET", "/api/v1/", nil},
			{"GET", "/api/v1/things/3", nil},
			{"GET", "/api/enc/a%2Fb", nil},
			{"GET", "/api/enc/a/b", nil},
			{"GET", "/api/nothing", nil},
		} {
			r := httptest.NewRequest(tc.method, tc.target, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			want := muxRoute(api, r)
			if got := table.mounted(api, r); got != want {
				t.Errorf("walked %v: %s %s %v: route %s, mux serves %s", walked, tc.method, tc.target, tc.header, routeDesc(got), routeDesc(want))
			}
			// The learnt routes alone, without router.Match's fallback.
			var m mux.RouteMatch
			api.Match(r, &m)
			if got := table.firstMatch((*table.mounts.Load())[api], r); got != m.Route {
				t.Errorf("walked %v: %s %s %v: learnt route %s, mux matches %s", walked, tc.method, tc.target, tc.header, routeDesc(got), routeDesc(m.Route))
			}
		}
	}
}

// routeDesc names a route by its template and methods ("none" for nil).
func routeDesc(route *mux.Route) string {
	if route == nil {
		return "none"
	}
	tmpl, _ := route.GetPathTemplate()
	methods, _ := route.GetMethods()
	return fmt.Sprintf("%q %v", tmpl, methods)
}
