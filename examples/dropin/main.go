// Command dropin is a small gorilla/mux app with its sessions in Redis (a
// gorilla sessions.Store) into which sessionbridge is dropped: the lines
// between "sessionbridge: begin" and "sessionbridge: end" are all that
// changed. The legacy page /profile still reads the session; /api/me has
// been migrated to bridge.IdentityFrom and its route is in dual mode, so a
// session user who calls it is converted to an HttpOnly JWT cookie. The
// instances share their counts, run-time modes and logouts through the
// fleet (bridge/fleet, on the same Redis); admins read the migration
// report at /migration (HTML) and /migration/report.json.
//
// Environment:
//
//	ADDR                     listen address (default 127.0.0.1:8081)
//	REDIS_URL                redis:// URL of the session store (default: an embedded in-memory Redis)
//	SESSION_HASH_KEY         securecookie hash key, at least 32 bytes (default: a public development key)
//	BRIDGE_SIGNING_KEY_FILE  PEM private key, EC P-256, Ed25519 or RSA (default: an ephemeral key)
//	BRIDGE_INSECURE_COOKIES  1 to drop the Secure attribute so cookies work on plain http (development only)
package main

import (
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

const (
	sessionName = "session"
	// devHashKey signs session cookies when SESSION_HASH_KEY is unset. It
	// is public: anyone can forge cookies signed with it.
	devHashKey = "sessionbridge-dropin-example-development-key-not-secret"
)

// user is an account of the app.
type user struct {
	ID       string
	Password string
	Roles    []string
}

// users are the app's accounts (a real app has a database).
var users = map[string]user{
	"alice": {ID: "1", Password: "alice-password", Roles: []string{"user"}},
	"bob":   {ID: "2", Password: "bob-password", Roles: []string{"user", "admin"}},
}

// options configure the app.
type options struct {
	// Store is the app's session store.
	Store sessions.Store
	// Redis is the Redis of the store, which the bridges' fleet shares.
	Redis redis.UniversalClient
	// SigningKey signs the JWTs the bridge mints.
	SigningKey *bridge.Key
	// SIDKey keys the session hashes in the JWTs: the same on every
	// instance, kept across signing-key rotations (see sidKey).
	SIDKey []byte
	// Issuer is the iss of the JWTs.
	Issuer string
	// InsecureCookies drops the Secure attribute of cookies, for plain
	// http on localhost.
	InsecureCookies bool
}

// app is the app's handler, and the bridge and fleet whose background work
// run starts and ends.
type app struct {
	http.Handler
	opts   options
	bridge *bridge.Bridge
	fleet  *fleet.Fleet
}

// newApp builds the app.
func newApp(opts options) (*app, error) {
	a := &app{opts: opts}
	r := mux.NewRouter()
	r.HandleFunc("/login", loginForm).Methods(http.MethodGet)
	r.HandleFunc("/login", a.login).Methods(http.MethodPost)
	r.HandleFunc("/logout", a.logout).Methods(http.MethodPost)
	r.HandleFunc("/profile", a.profile).Methods(http.MethodGet)
	r.HandleFunc("/api/me", a.me).Methods(http.MethodGet)
	a.Handler = r

	// sessionbridge: begin
	f, err := fleet.New(fleet.Config{Redis: opts.Redis}) // counts, modes and logouts shared by the instances
	if err != nil {
		return nil, err
	}
	b, err := bridge.New(bridge.Config{
		Sessions:           bridge.StoreSource(opts.Store, sessionName), // the app's store and cookie name
		SIDKey:             opts.SIDKey,
		Fleet:              f,
		SigningKey:         opts.SigningKey,
		Issuer:             opts.Issuer,
		Audience:           "dropin",
		Router:             r,
		Routes:             bridge.Routes{"/api/me": bridge.Dual}, // everything else: legacy
		InsecureDevCookies: opts.InsecureCookies,
	})
	if err != nil {
		return nil, err
	}
	r.Use(b.Middleware)
	r.Handle("/.well-known/jwks.json", b.JWKSHandler()) // for downstream services
	r.Handle("/migration", adminOnly(f.DashboardHandler())).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/migration/report.json", adminOnly(f.ReportHandler())).Methods(http.MethodGet)
	a.bridge, a.fleet = b, f // logout revokes the JWT too; run runs the fleet
	// sessionbridge: end

	return a, nil
}

// sessionbridge: begin

// sidKey derives Config.SIDKey from the legacy cookie's hash key: a secret
// every instance already shares and that outlives signing-key rotations.
func sidKey(hashKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, hashKey, nil, "sessionbridge sid key", 32)
}

// adminOnly serves the migration report to admins only. Its routes are
// legacy, where the bridge identifies the caller without refusing anyone.
func adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := bridge.IdentityFrom(r.Context())
		switch {
		case !ok:
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		case !id.HasRole("admin"):
			http.Error(w, "forbidden", http.StatusForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// sessionbridge: end

const loginPage = `<!doctype html>
<title>Log in</title>
<form method="post" action="/login">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button>Log in</button>
</form>
`

// loginForm serves the login page.
func loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(loginPage))
}

// login is the legacy login: a form post that starts a session.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	u, ok := users[name]
	if !ok || subtle.ConstantTimeCompare([]byte(password), []byte(u.Password)) != 1 {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	// A new session (new ID) at every login: no session fixation.
	s := sessions.NewSession(a.opts.Store, sessionName)
	s.Options = &sessions.Options{
		Path: "/", MaxAge: 7 * 24 * 3600, HttpOnly: true,
		Secure: !a.opts.InsecureCookies, SameSite: http.SameSiteLaxMode,
	}
	s.Values["user_id"] = u.ID
	s.Values["username"] = name
	s.Values["roles"] = u.Roles
	if err := s.Save(r, w); err != nil {
		http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, "/profile", http.StatusSeeOther)
}

// logout ends the session.
func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	// sessionbridge: begin
	if a.bridge != nil { // deletes the session, revokes the JWT, clears both cookies
		if err := a.bridge.Logout(w, r); err != nil {
			http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	// sessionbridge: end
	s, err := a.opts.Store.Get(r, sessionName)
	if err == nil {
		s.Options.MaxAge = -1
		err = s.Save(r, w)
	}
	if err != nil {
		http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// profile is a legacy page: it still reads the session (its route is in
// legacy mode, where the bridge only observes).
func (a *app) profile(w http.ResponseWriter, r *http.Request) {
	var name string
	if s, err := a.opts.Store.Get(r, sessionName); err == nil {
		name, _ = s.Values["username"].(string)
	}
	if name == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Hello, %s.\n", name)
}

// me is migrated: it reads who is calling from bridge.IdentityFrom, which
// works for a session and for a JWT alike, instead of from the session.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	id, ok := bridge.IdentityFrom(r.Context())
	if !ok { // the route is dual: the bridge has refused anonymous calls
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"user_id":     id.Subject(),
		"username":    id.Name(),
		"roles":       id.Roles(),
		"auth_source": id.Source().String(),
	})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		slog.Error("dropin: " + err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	addr := cmp.Or(os.Getenv("ADDR"), "127.0.0.1:8081")

	var rdb *redis.Client
	if u := os.Getenv("REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			return errors.New("REDIS_URL: not a valid redis:// URL")
		}
		o.ContextTimeoutEnabled = true
		rdb = redis.NewClient(o)
	} else {
		m, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer m.Close()
		slog.Warn("REDIS_URL is not set: sessions live in an embedded in-memory Redis")
		rdb = redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	}
	defer rdb.Close()

	hashKey := os.Getenv("SESSION_HASH_KEY")
	if hashKey == "" {
		slog.Warn("SESSION_HASH_KEY is not set: session cookies are signed with a public development key")
		hashKey = devHashKey
	}
	store, err := redisstore.New(redisstore.Config{Client: rdb, KeyPairs: [][]byte{[]byte(hashKey)}})
	if err != nil {
		return err
	}

	var key *bridge.Key
	if path := os.Getenv("BRIDGE_SIGNING_KEY_FILE"); path != "" {
		key, err = bridge.LoadKeyFile(path)
	} else {
		slog.Warn("BRIDGE_SIGNING_KEY_FILE is not set: tokens are signed with an ephemeral key")
		key, err = bridge.GenerateKey()
	}
	if err != nil {
		return err
	}

	// sessionbridge: begin
	sid, err := sidKey([]byte(hashKey))
	if err != nil {
		return err
	}
	// sessionbridge: end

	a, err := newApp(options{
		Store:           store,
		Redis:           rdb,
		SigningKey:      key,
		SIDKey:          sid,
		Issuer:          "http://" + addr,
		InsecureCookies: os.Getenv("BRIDGE_INSECURE_COOKIES") == "1",
	})
	if err != nil {
		return err
	}

	// sessionbridge: begin
	go a.bridge.Run(ctx) // trusted issuers' JWKS (none here); returns when ctx ends
	go a.fleet.Run(ctx)  // flushes the counts, applies run-time modes and other instances' logouts
	// sessionbridge: end

	srv := &http.Server{Addr: addr, Handler: a, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("listening", "url", "http://"+addr, "users", "alice / alice-password, bob / bob-password (admin)")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)

	// sessionbridge: begin
	// Once no request reaches the middleware any more: the final flush of
	// the counts (Close reports the ones it could not flush).
	err = errors.Join(err, a.fleet.Close())
	// sessionbridge: end

	return err
}
