// Package legacyapp is a realistic legacy monolith, as it looked before the
// migration to JWTs: gorilla/mux routing, gorilla/sessions sessions held in
// Redis, server-rendered HTML pages and a small JSON API.
//
// It is the demo and test bed of sessionbridge. The HTML pages read the
// session directly and stay legacy; the JSON API identifies its caller
// through one pluggable function, Config.CurrentUser, so that a later change
// can move it to JWTs without touching the handlers.
package legacyapp

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
)

// DefaultSessionName is the name of the session cookie when
// Config.SessionName is empty.
const DefaultSessionName = "session"

// Config configures an App.
type Config struct {
	// Store holds the sessions, e.g. a *redisstore.Store. Required.
	Store sessions.Store

	// SessionName is the name of the session and of its cookie.
	// Default "session".
	SessionName string

	// Logger receives one line per request and the app's errors. It never
	// receives cookie values, session IDs or passwords. Default: discard.
	Logger *slog.Logger

	// Users are the accounts that can log in. Default: DemoUsers().
	Users []User

	// CurrentUser identifies the caller of the JSON API. It returns an
	// error wrapping ErrUnauthenticated (401) or ErrUnavailable (503);
	// any other error answers 500. Default: App.SessionUser, which reads
	// the session. The HTML pages use it too once they are migrated.
	CurrentUser func(r *http.Request) (Principal, error)

	// Carts, when set, migrates the HTML pages: they identify the user
	// through CurrentUser instead of reading the session, and keep carts
	// here by user ID (RedisCarts) instead of in the session. Nil: the
	// legacy pages.
	Carts CartStore
}

// App is the legacy monolith. It is safe for concurrent use.
type App struct {
	store       sessions.Store
	sessionName string
	log         *slog.Logger
	users       userDirectory
	orders      map[string][]Order // by user ID
	currentUser func(r *http.Request) (Principal, error)
	carts       CartStore // nil: legacy pages with the cart in the session
	pages       map[string]*template.Template
}

// New returns an App for cfg, or an error naming the field that is wrong.
// It does no I/O.
func New(cfg Config) (*App, error) {
	if cfg.Store == nil {
		return nil, errors.New("legacyapp: Config.Store is required")
	}
	a := &App{
		store:       cfg.Store,
		sessionName: cfg.SessionName,
		log:         cfg.Logger,
		orders:      demoOrders(),
		currentUser: cfg.CurrentUser,
		carts:       cfg.Carts,
	}
	if a.sessionName == "" {
		a.sessionName = DefaultSessionName
	}
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	users := cfg.Users
	if users == nil {
		users = DemoUsers()
	}
	var err error
	if a.users, err = newUserDirectory(users); err != nil {
		return nil, err
	}
	if a.currentUser == nil {
		a.currentUser = a.SessionUser
	}
	if a.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("legacyapp: templates: %w", err)
	}
	return a, nil
}

// Router builds and returns a new router with all the app's routes. Each
// route is named (e.g. "logout") so that a caller can find it with
// router.Get(name) and wrap its handler; its path template labels it, as
// mux.CurrentRoute(r).GetPathTemplate() reports.
func (a *App) Router() *mux.Router {
	r := mux.NewRouter()
	r.Use(a.logRequests)
	// Forms authenticated by a cookie must not be posted from other sites.
	r.Use(http.NewCrossOriginProtection().Handler)

	r.HandleFunc("/healthz", a.healthz).Methods(http.MethodGet).Name("healthz")

	r.HandleFunc("/login", a.loginForm).Methods(http.MethodGet).Name("login_form")
	r.HandleFunc("/login", a.login).Methods(http.MethodPost).Name("login")
	r.HandleFunc("/logout", a.logout).Methods(http.MethodPost).Name("logout")

	r.HandleFunc("/profile", a.profile).Methods(http.MethodGet).Name("profile")
	r.HandleFunc("/cart", a.cart).Methods(http.MethodGet).Name("cart")
	r.HandleFunc("/cart/items", a.addCartItem).Methods(http.MethodPost).Name("cart_add")

	r.HandleFunc("/api/me", a.me).Methods(http.MethodGet).Name("api_me")
	r.HandleFunc("/api/orders", a.listOrders).Methods(http.MethodGet).Name("api_orders")
	r.HandleFunc("/api/orders/{id}", a.getOrder).Methods(http.MethodGet).Name("api_order")
	r.HandleFunc("/admin/users", a.listUsers).Methods(http.MethodGet).Name("admin_users")

	r.NotFoundHandler = a.logUnmatched(http.NotFoundHandler())
	r.MethodNotAllowedHandler = a.logUnmatched(http.HandlerFunc(methodNotAllowed))
	return r
}

func (a *App) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok")
}

func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
}
