package bridge_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

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
		fmt.Fprintf(w, "user %s via %s", id.Subject, id.Source)
	})
	b, err := bridge.New(bridge.Config{
		Sessions:   bridge.StoreSource(store, "session"),
		SigningKey: key,
		Issuer:     "https://app.example.com",
		Audience:   "app",
		Router:     r,
		Routes:     bridge.Routes{"/api/me": bridge.Dual},
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
	// set cookie: id_token HttpOnly: true
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

func ExampleParseRoutes() {
	routes, err := bridge.ParseRoutes("/api/me=dual, /api/orders/{id}=jwt")
	fmt.Println(routes["/api/me"], routes["/api/orders/{id}"], err)
	// Output:
	// dual jwt <nil>
}
