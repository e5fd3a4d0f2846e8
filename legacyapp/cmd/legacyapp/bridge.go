package main

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/bridgeprom"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/legacyapp"
)

// defaultModes is the half-way state of a real migration: the JSON API,
// whose handlers read bridge.IdentityFrom, in dual mode; the HTML pages,
// which still read the session, in legacy mode (the default mode).
var defaultModes = bridge.Routes{
	"/api/me":          bridge.Dual,
	"/api/orders":      bridge.Dual,
	"/api/orders/{id}": bridge.Dual,
	"/admin/users":     bridge.Dual,
}

// publicRoutes need no credentials: they stay in legacy mode whatever the
// default mode, and do not hold back session retirement.
var publicRoutes = []string{
	"/login", "/logout", "/healthz", "/auth/cookie", "/.well-known/jwks.json",
	"/metrics", "/migration/report.json", "/migration/",
}

// demoConfig is the bridge's configuration read from the environment.
type demoConfig struct {
	bridge  bridge.Config
	fleet   fleet.Config
	rollout int // percent of sessions converted on dual routes
	// adminPages gates /metrics and /migration/: "loopback" (development)
	// or "admin" (the app's own admin authentication, for production).
	adminPages string
}

// bridgeConfig reads the BRIDGE_* environment.
func bridgeConfig(getenv func(string) string, addr string, hashKey []byte, logger *slog.Logger) (demoConfig, error) {
	var fcfg fleet.Config
	cfg := bridge.Config{
		Issuer:       getenv("BRIDGE_ISSUER"),
		Audience:     getenv("BRIDGE_AUDIENCE"),
		Routes:       defaultModes,
		PublicRoutes: publicRoutes,
		Logger:       logger,
	}
	// The sid hash key must outlive signing-key rotations (sids of old
	// tokens must still match at logout, and the rollout must not
	// reshuffle): derive it from the session hash key the fleet shares.
	mac := hmac.New(sha256.New, hashKey)
	mac.Write([]byte("sessionbridge sid key"))
	cfg.SIDKey = mac.Sum(nil)
	if cfg.Issuer == "" {
		cfg.Issuer = "http://" + addr
	}
	if cfg.Audience == "" {
		cfg.Audience = "legacyapp"
	}
	if path := getenv("BRIDGE_SIGNING_KEY_FILE"); path != "" {
		key, err := bridge.LoadKeyFile(path)
		if err != nil {
			return demoConfig{}, fmt.Errorf("BRIDGE_SIGNING_KEY_FILE: %w", err)
		}
		cfg.SigningKey = key
	} else {
		key, err := bridge.GenerateKey()
		if err != nil {
			return demoConfig{}, err
		}
		cfg.SigningKey = key
		logger.Warn("BRIDGE_SIGNING_KEY_FILE is not set: tokens are signed with an EPHEMERAL key; they die with this process and other instances refuse them. Set it to a PEM private key (EC P-256, Ed25519 or RSA) shared by the fleet")
	}
	if s := getenv("BRIDGE_VERIFICATION_KEY_FILES"); s != "" {
		for _, path := range strings.Split(s, ",") {
			key, err := bridge.LoadKeyFile(strings.TrimSpace(path))
			if err != nil {
				return demoConfig{}, fmt.Errorf("BRIDGE_VERIFICATION_KEY_FILES: %w", err)
			}
			cfg.VerificationKeys = append(cfg.VerificationKeys, key)
		}
	}
	trusted, err := trustedIssuers(getenv)
	if err != nil {
		return demoConfig{}, err
	}
	cfg.TrustedIssuers = trusted
	if s := getenv("BRIDGE_DEFAULT_MODE"); s != "" {
		m, err := bridge.ParseMode(s)
		if err != nil {
			return demoConfig{}, fmt.Errorf("BRIDGE_DEFAULT_MODE: %w", err)
		}
		cfg.DefaultMode = m
	}
	if s := getenv("BRIDGE_MODES"); s != "" {
		routes, err := bridge.ParseRoutes(s)
		if err != nil {
			return demoConfig{}, fmt.Errorf("BRIDGE_MODES: %w", err)
		}
		cfg.Routes = routes
	}
	rollout := 100
	if s := getenv("BRIDGE_ROLLOUT_PERCENT"); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil || p < 0 || p > 100 {
			return demoConfig{}, fmt.Errorf("BRIDGE_ROLLOUT_PERCENT %q: want a whole number from 0 to 100", s)
		}
		rollout = p
	}
	if s := getenv("BRIDGE_TOKEN_TTL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return demoConfig{}, fmt.Errorf("BRIDGE_TOKEN_TTL: %w", err)
		}
		cfg.TokenTTL = d
	}
	if s := getenv("BRIDGE_FLUSH_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return demoConfig{}, fmt.Errorf("BRIDGE_FLUSH_INTERVAL %q: want a positive duration such as 5s", s)
		}
		fcfg.FlushInterval = d
	}
	switch s := getenv("BRIDGE_RETIRE_SESSIONS"); s {
	case "", "0", "false":
	case "1", "true":
		cfg.RetireSessions = true
	default:
		return demoConfig{}, fmt.Errorf("BRIDGE_RETIRE_SESSIONS %q: want 1 or unset", s)
	}
	switch s := getenv("BRIDGE_INSECURE_COOKIES"); s {
	case "", "0", "false":
	case "1", "true":
		cfg.InsecureDevCookies = true
		logger.Warn("BRIDGE_INSECURE_COOKIES is set: JWT cookies are sent without Secure over plain http; development only")
	default:
		return demoConfig{}, fmt.Errorf("BRIDGE_INSECURE_COOKIES %q: want 1 or unset", s)
	}
	adminPages := cmp.Or(getenv("ADMIN_PAGES"), "loopback")
	if adminPages != "loopback" && adminPages != "admin" {
		return demoConfig{}, fmt.Errorf("ADMIN_PAGES %q: want loopback (development) or admin (the app's admin authentication)", adminPages)
	}
	return demoConfig{bridge: cfg, fleet: fcfg, rollout: rollout, adminPages: adminPages}, nil
}

// withBridge drops the bridge into the app's router: the middleware on
// every route, the JSON API reading bridge.IdentityFrom, the JWKS, and a
// logout that also clears and revokes the JWT. The fleet shares counts,
// modes and revocations through rdb.
func withBridge(d demoConfig, rdb redis.UniversalClient, store sessions.Store, newApp func(legacyapp.Config) (*legacyapp.App, error), appCfg legacyapp.Config) (*bridge.Bridge, *fleet.Fleet, *mux.Router, error) {
	cfg := d.bridge
	cfg.Sessions = bridge.StoreSource(store, appCfg.SessionName)
	// The app's handlers get the store the bridge watches (b.WrapStore,
	// set below once b exists): their session reads are counted per
	// route, and the app's own logout ends the tokens.
	handlers := &laterStore{Store: store}
	appCfg.Store = handlers
	var app *legacyapp.App
	appCfg.CurrentUser = func(r *http.Request) (legacyapp.Principal, error) {
		id, ok := bridge.IdentityFrom(r.Context())
		switch {
		case !ok:
			// A route in legacy mode: the bridge only observed.
			return app.SessionUser(r)
		case id.Subject() == "":
			// An IdP's identity that no local user is linked to: its own
			// subject, under its issuer, with no local role.
			c, _ := id.Claims()
			return legacyapp.Principal{UserID: c.Subject, Username: id.Name(), Issuer: id.Issuer(), Source: id.Source().String()}, nil
		}
		return legacyapp.Principal{UserID: id.Subject(), Username: id.Name(), Roles: id.Roles(), Source: id.Source().String()}, nil
	}
	app, err := newApp(appCfg)
	if err != nil {
		return nil, nil, nil, err
	}
	// An IdP identity is the local user whose email it carries, verified.
	cfg.TrustedIssuers = slices.Clone(cfg.TrustedIssuers)
	for i := range cfg.TrustedIssuers {
		cfg.TrustedIssuers[i].Link = linkByVerifiedEmail(app)
	}
	r := app.Router()
	fcfg := d.fleet
	fcfg.Redis = rdb
	f, err := fleet.New(fcfg)
	if err != nil {
		return nil, nil, nil, err
	}
	// Every route is on the router before New, which checks PublicRoutes
	// against it: the bridge's own are declared now and get their
	// handlers once the Bridge exists. The migration views and metrics
	// are operators' pages: the demo serves them to loopback clients
	// only; in production put them behind admin authentication.
	jwks := r.Path("/.well-known/jwks.json").Methods(http.MethodGet, http.MethodHead).Name("jwks")
	exchange := r.Path("/auth/cookie").Name("auth_cookie")
	reg := prometheus.NewRegistry()
	gate := loopbackOnly
	if d.adminPages == "admin" {
		gate = func(h http.Handler) http.Handler { return adminOnly(appCfg.CurrentUser, h) }
	}
	r.Handle("/metrics", gate(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))).Methods(http.MethodGet).Name("metrics")
	r.Handle("/migration/report.json", gate(f.ReportHandler())).Methods(http.MethodGet).Name("migration_report")
	r.Handle("/migration/", gate(f.DashboardHandler())).Methods(http.MethodGet, http.MethodHead).Name("migration_dashboard")
	cfg.Router = r
	cfg.Fleet = f
	b, err := bridge.New(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := b.SetRolloutPercent(d.rollout); err != nil {
		return nil, nil, nil, err
	}
	handlers.Store = b.WrapStore(store)
	jwks.Handler(b.JWKSHandler())
	exchange.Handler(b.CookieExchangeHandler())
	if err := reg.Register(bridgeprom.NewCollector(b, f)); err != nil {
		return nil, nil, nil, err
	}
	tokenCookie := b.Config().CookieName
	login := r.Get("login")
	appLogin := login.GetHandler()
	login.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A new legacy session must not be outranked by the JWT of
		// whoever was logged in before.
		if cookie, err := r.Cookie(tokenCookie); err == nil && cookie.Value != "" {
			b.ClearTokenCookie(w)
		}
		appLogin.ServeHTTP(w, r)
	}))
	logout := r.Get("logout")
	appLogout := logout.GetHandler()
	logout.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := b.Logout(w, r); errors.Is(err, bridge.ErrStoreUnavailable) {
			bridge.WriteError(w, r, &bridge.Rejection{Status: http.StatusServiceUnavailable, Reason: bridge.ReasonStoreUnavailable, Err: err})
			return
		}
		appLogout.ServeHTTP(w, r)
	}))
	r.Use(b.Middleware)
	return b, f, r, nil
}

// laterStore is a sessions.Store set after the app is built: the store
// the bridge wraps, which needs the bridge, which needs the app's router.
// (An app whose handlers read a package-level store variable writes
// store = b.WrapStore(store) instead.)
type laterStore struct{ sessions.Store }

// linkByVerifiedEmail links an IdP identity to the local user with its
// email, when the IdP says the email is verified.
func linkByVerifiedEmail(app *legacyapp.App) func(context.Context, bridge.Claims) (bridge.LocalUser, bool, error) {
	return func(_ context.Context, c bridge.Claims) (bridge.LocalUser, bool, error) {
		if !c.EmailVerified || c.Email == "" {
			return bridge.LocalUser{}, false, nil
		}
		u, ok := app.UserByVerifiedEmail(c.Email)
		return bridge.LocalUser{Subject: u.ID, Name: u.Username, Roles: u.Roles}, ok, nil
	}
}

// adminOnly serves h to the app's admins only (role admin, whatever the
// credential: session, JWT, linked IdP identity): 401 to a caller the app
// does not know, 403 to one who is not an admin. Behind a reverse proxy
// every client is loopback: this, not the connecting address, is the gate.
func adminOnly(currentUser func(*http.Request) (legacyapp.Principal, error), h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := currentUser(r)
		switch {
		case err != nil:
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "unauthorized: operators' page, log in as an admin", http.StatusUnauthorized)
		case !p.HasRole("admin"):
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "forbidden: operators' page, admins only", http.StatusForbidden)
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// loopbackOnly answers 403 to clients not on the loopback interface: the
// development setting (ADMIN_PAGES=loopback).
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "forbidden: operators' page, loopback only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// trustedIssuers reads BRIDGE_TRUSTED_ISSUER, BRIDGE_TRUSTED_JWKS_URL and
// BRIDGE_TRUSTED_AUDIENCE (comma-separated audiences), then the same names
// with the suffix _2, _3, ... for further issuers, up to the first missing.
func trustedIssuers(getenv func(string) string) ([]bridge.TrustedIssuer, error) {
	var out []bridge.TrustedIssuer
	for i := 1; ; i++ {
		suffix := ""
		if i > 1 {
			suffix = "_" + strconv.Itoa(i)
		}
		iss := getenv("BRIDGE_TRUSTED_ISSUER" + suffix)
		jwks := getenv("BRIDGE_TRUSTED_JWKS_URL" + suffix)
		aud := getenv("BRIDGE_TRUSTED_AUDIENCE" + suffix)
		if iss == "" && jwks == "" && aud == "" {
			return out, nil
		}
		if iss == "" || jwks == "" || aud == "" {
			return nil, fmt.Errorf("BRIDGE_TRUSTED_ISSUER%s, BRIDGE_TRUSTED_JWKS_URL%s and BRIDGE_TRUSTED_AUDIENCE%s go together", suffix, suffix, suffix)
		}
		var auds []string
		for _, a := range strings.Split(aud, ",") {
			if a = strings.TrimSpace(a); a != "" {
				auds = append(auds, a)
			}
		}
		out = append(out, bridge.TrustedIssuer{Issuer: iss, JWKSURL: jwks, Audiences: auds})
	}
}
