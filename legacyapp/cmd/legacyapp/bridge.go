package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
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

// bridgeConfig reads the BRIDGE_* environment into a bridge.Config.
func bridgeConfig(getenv func(string) string, addr string, logger *slog.Logger) (bridge.Config, int, error) {
	cfg := bridge.Config{
		Issuer:   getenv("BRIDGE_ISSUER"),
		Audience: getenv("BRIDGE_AUDIENCE"),
		Routes:   defaultModes,
		Logger:   logger,
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "http://" + addr
	}
	if cfg.Audience == "" {
		cfg.Audience = "legacyapp"
	}
	if path := getenv("BRIDGE_SIGNING_KEY_FILE"); path != "" {
		key, err := bridge.LoadKeyFile(path)
		if err != nil {
			return cfg, 0, fmt.Errorf("BRIDGE_SIGNING_KEY_FILE: %w", err)
		}
		cfg.SigningKey = key
	} else {
		key, err := bridge.GenerateKey()
		if err != nil {
			return cfg, 0, err
		}
		cfg.SigningKey = key
		logger.Warn("BRIDGE_SIGNING_KEY_FILE is not set: tokens are signed with an EPHEMERAL key; they die with this process and other instances refuse them. Set it to a PEM private key (EC P-256, Ed25519 or RSA) shared by the fleet")
	}
	if s := getenv("BRIDGE_DEFAULT_MODE"); s != "" {
		m, err := bridge.ParseMode(s)
		if err != nil {
			return cfg, 0, fmt.Errorf("BRIDGE_DEFAULT_MODE: %w", err)
		}
		cfg.DefaultMode = m
	}
	if s := getenv("BRIDGE_MODES"); s != "" {
		routes, err := bridge.ParseRoutes(s)
		if err != nil {
			return cfg, 0, fmt.Errorf("BRIDGE_MODES: %w", err)
		}
		cfg.Routes = routes
	}
	rollout := 100
	if s := getenv("BRIDGE_ROLLOUT_PERCENT"); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil || p < 0 || p > 100 {
			return cfg, 0, fmt.Errorf("BRIDGE_ROLLOUT_PERCENT %q: want a whole number from 0 to 100", s)
		}
		rollout = p
	}
	if s := getenv("BRIDGE_TOKEN_TTL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return cfg, 0, fmt.Errorf("BRIDGE_TOKEN_TTL: %w", err)
		}
		cfg.TokenTTL = d
	}
	switch s := getenv("BRIDGE_INSECURE_COOKIES"); s {
	case "", "0", "false":
	case "1", "true":
		cfg.InsecureDevCookies = true
		logger.Warn("BRIDGE_INSECURE_COOKIES is set: JWT cookies are sent without Secure over plain http; development only")
	default:
		return cfg, 0, fmt.Errorf("BRIDGE_INSECURE_COOKIES %q: want 1 or unset", s)
	}
	return cfg, rollout, nil
}

// withBridge drops the bridge into the app's router: the middleware on
// every route, the JSON API reading bridge.IdentityFrom, the JWKS, and a
// logout that also clears and revokes the JWT.
func withBridge(cfg bridge.Config, rollout int, store sessions.Store, newApp func(legacyapp.Config) (*legacyapp.App, error), appCfg legacyapp.Config) (*bridge.Bridge, *mux.Router, error) {
	cfg.Sessions = bridge.StoreSource(store, appCfg.SessionName)
	var app *legacyapp.App
	appCfg.CurrentUser = func(r *http.Request) (legacyapp.Principal, error) {
		if id, ok := bridge.IdentityFrom(r.Context()); ok {
			return legacyapp.Principal{UserID: id.Subject, Username: id.Name, Roles: id.Roles, Source: id.Source.String()}, nil
		}
		// A route in legacy mode: the bridge only observed.
		return app.SessionUser(r)
	}
	app, err := newApp(appCfg)
	if err != nil {
		return nil, nil, err
	}
	r := app.Router()
	cfg.Router = r
	b, err := bridge.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := b.SetRolloutPercent(rollout); err != nil {
		return nil, nil, err
	}
	r.Handle("/.well-known/jwks.json", b.JWKSHandler()).Methods(http.MethodGet, http.MethodHead).Name("jwks")
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
	return b, r, nil
}
