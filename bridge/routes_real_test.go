// Tests of routers shaped as real apps build them (issue 14): templates
// with regular expressions.
package bridge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
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
