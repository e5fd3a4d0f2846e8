package bridge_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// A legacy session converted into a JWT cookie on a dual route: the first
// request is authenticated by the session and gets a token; the next one,
// carrying only the token, never reads the session store.
func Example() {
	store := sessions.NewCookieStore([]byte("an-example-hash-key-of-32-bytes!"))
	key, _ := bridge.GenerateKey()

	r := mux.NewRouter()
	r.HandleFunc("/api/me", func(w http.ResponseWriter, r *http.Request) {
		id, _ := bridge.IdentityFrom(r.Context())
		fmt.Fprintf(w, "user %s via %s", id.Subject(), id.Source())
	})
	b, err := bridge.New(bridge.Config{
		Sessions:   bridge.StoreSource(store, "session"),
		SigningKey: key,
		Issuer:     "https://app.example.com",
		Audience:   "app",
		Router:     r,
		Routes:     bridge.Routes{"/api/me": bridge.Dual},
		// SIDKey keys the hash of session IDs that tokens carry: a
		// secret shared by the fleet that outlives key rotations.
		SIDKey: []byte("an-example-sid-key-of-32-bytes!!"),
	})
	if err != nil {
		panic(err)
	}
	r.Use(b.Middleware)

	// The legacy login, as the monolith does it.
	login := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/login", nil)
	s, _ := store.New(req, "session")
	s.Values["user_id"] = "1"
	_ = s.Save(req, login)
	legacy := login.Result().Cookies()[0]

	req = httptest.NewRequest("GET", "/api/me", nil)
	req.AddCookie(legacy)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	fmt.Println(w.Body.String())
	token := w.Result().Cookies()[0]
	fmt.Println("set cookie:", token.Name, "HttpOnly:", token.HttpOnly)

	req = httptest.NewRequest("GET", "/api/me", nil)
	req.AddCookie(token)
	w = httptest.NewRecorder()
	r.ServeHTTP(w, req)
	fmt.Println(w.Body.String())
	// Output:
	// user 1 via session
	// set cookie: __Host-id_token HttpOnly: true
	// user 1 via jwt_cookie
}

// Routes in dual or jwt mode refuse requests without credentials with a
// short JSON reason.
func ExampleBridge_Middleware() {
	key, _ := bridge.GenerateKey()
	r := mux.NewRouter()
	r.HandleFunc("/api/orders", func(w http.ResponseWriter, r *http.Request) {})
	b, _ := bridge.New(bridge.Config{
		SigningKey: key, Issuer: "https://app.example.com", Audience: "app",
		Routes: bridge.Routes{"/api/orders": bridge.JWT},
	})
	r.Use(b.Middleware)

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/api/orders", nil))
	fmt.Print(w.Code, " ", w.Header().Get("WWW-Authenticate"), " ", w.Body.String())
	// Output:
	// 401 Bearer {"error":"Unauthorized","reason":"no_credentials"}
}

// Check is the middleware's decision without its answer, for any router.
// On a net/http.ServeMux the route is the pattern that matched
// (r.Pattern): modes and counts are by pattern, and the handler answers
// a refusal its own way.
func ExampleBridge_Check() {
	secret := []byte("an-example-hs256-secret-of-32-bytes-or-more")
	key, _ := bridge.NewKey(secret)
	b, _ := bridge.New(bridge.Config{
		SigningKey: key, Issuer: "https://app.example.com", Audience: "app",
		Routes: bridge.Routes{"GET /api/orders/{id}": bridge.JWT},
	})

	serveMux := http.NewServeMux()
	serveMux.HandleFunc("GET /api/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		r, err := b.Check(w, r)
		var rej *bridge.Rejection
		if errors.As(err, &rej) {
			http.Error(w, "please log in ("+rej.Reason.String()+")", rej.Status)
			return
		}
		id, _ := bridge.IdentityFrom(r.Context())
		fmt.Fprintf(w, "order %s for %s", r.PathValue("id"), id.Subject())
	})

	// A token as the app's login signs it.
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer: "https://app.example.com", Subject: "alice", Audience: jwt.ClaimStrings{"app"},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	}).SignedString(secret)

	for _, auth := range []string{"", "Bearer " + tok} {
		req := httptest.NewRequest("GET", "/api/orders/7", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		serveMux.ServeHTTP(w, req)
		fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
	}
	for _, rc := range b.Snapshot() {
		if rc.Route == "GET /api/orders/{id}" {
			fmt.Println(rc.Route, rc.Mode, "bearer:", rc.Requests().Of(bridge.SourceJWTBearer),
				"no credentials:", rc.Rejections.Of(bridge.ReasonNoCredentials))
		}
	}
	// Output:
	// 401 please log in (no_credentials)
	// 200 order 7 for alice
	// GET /api/orders/{id} jwt bearer: 1 no credentials: 1
}

func ExampleParseRoutes() {
	routes, err := bridge.ParseRoutes("/api/me=dual, /api/orders/{id}=jwt")
	fmt.Println(routes["/api/me"], routes["/api/orders/{id}"], err)
	// Output:
	// dual jwt <nil>
}

// A template's label drops its variables' patterns; either form names the
// route in Config.Routes, PublicRoutes and the run-time modes.
func ExampleRouteLabel() {
	fmt.Println(bridge.RouteLabel("/posts/{page:[0-9]+}"))
	fmt.Println(bridge.RouteLabel("/a/{id:[0-9]{1,3}}/{name}"))
	// Output:
	// /posts/{page}
	// /a/{id}/{name}
}

// A router mounted as a route's handler, and a subrouter: each of their
// routes is counted and given a mode on its own; their prefixes are no
// routes, and New refuses a Routes entry naming no route.
func ExampleConfig_mountedRouter() {
	key, _ := bridge.GenerateKey()
	api := mux.NewRouter()
	api.HandleFunc("/api/posts", func(http.ResponseWriter, *http.Request) {})
	api.HandleFunc("/api/posts/{id:[0-9]+}", func(http.ResponseWriter, *http.Request) {})
	r := mux.NewRouter()
	admin := r.PathPrefix("/admin").Subrouter()
	admin.HandleFunc("/users", func(http.ResponseWriter, *http.Request) {})
	r.PathPrefix("/api/").Handler(api)

	cfg := bridge.Config{SigningKey: key, Issuer: "https://app.example.com", Audience: "app",
		Router: r, Routes: bridge.Routes{"/api/post/{id}": bridge.JWT}}
	_, err := bridge.New(cfg)
	fmt.Println(err)

	cfg.Routes = bridge.Routes{"/api/posts/{id}": bridge.JWT}
	b, _ := bridge.New(cfg)
	r.Use(b.Middleware)
	for _, path := range []string{"/api/posts", "/api/posts/7", "/admin/users"} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		fmt.Println(path, w.Code)
	}
	for _, rc := range b.Snapshot() {
		if rc.Route != bridge.RouteUnmatched && rc.Route != bridge.RouteOther {
			fmt.Println(rc.Route, rc.Mode, rc.Requests().Total())
		}
	}
	// Output:
	// bridge: Config.Routes: "/api/post/{id}" names no route of Config.Router (closest: "/api/posts/{id}", "/api/posts", "/admin/users")
	// /api/posts 200
	// /api/posts/7 401
	// /admin/users 200
	// /api/posts/{id} jwt 1
	// /admin/users legacy 1
	// /api/posts legacy 1
}
