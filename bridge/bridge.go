package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
)

// Defaults of Config fields left zero.
const (
	DefaultTokenTTL     = 15 * time.Minute
	DefaultLeeway       = 30 * time.Second
	MaxLeeway           = 60 * time.Second
	DefaultMaxTokenSize = 8 << 10
	DefaultCookieName   = "__Host-id_token" // with Secure cookies
	DevCookieName       = "id_token"        // with InsecureDevCookies
	DefaultCacheSize    = 10000
	NoCache             = -1 // as Config.CacheSize: no cache of verified tokens
	MinSIDKeySize       = 32 // the least size of Config.SIDKey, in bytes
)

// Config configures a Bridge. A zero field takes the default its comment
// names; a negative size or duration is an error (only NoCache means
// "off").
type Config struct {
	// Sessions reads the legacy session: StoreSource with the app's store,
	// or a source from bridge/redisstore. Nil: JWTs only.
	Sessions SessionSource
	// Fleet shares counts, revocations and run-time modes with the other
	// instances (bridge/fleet). Nil: all of it stays in this process.
	Fleet Fleet

	SigningKey       *Key            // signs minted tokens. Required.
	VerificationKeys []*Key          // previous keys, accepted until their tokens expire
	TrustedIssuers   []TrustedIssuer // external IdPs whose tokens are accepted
	Issuer           string          // iss of minted tokens; the only one our keys verify. Required.
	Audience         string          // aud of minted tokens, required in every token of Issuer. Required.

	// Router, when set, is walked by New so that every route has its
	// counters from the start; Routes and PublicRoutes must name its routes.
	Router       *mux.Router
	Routes       Routes   // modes by mux path template (or ServeMux pattern)
	PublicRoutes []string // routes that need no credential: always legacy, never hold back RetireSessions
	DefaultMode  Mode     // mode of routes not in Routes. Default Legacy.

	TokenTTL     time.Duration // lifetime of minted tokens, never past the session's. Default 15m; at least 1m.
	Leeway       time.Duration // clock skew allowed on exp, nbf, iat. Default 30s; at most 60s.
	MaxTokenSize int           // checked before any decoding. Default 8 KiB.
	CacheSize    int           // verified tokens cached. Default 10000; NoCache disables.

	CookieName         string        // the JWT cookie. Default DefaultCookieName, or DevCookieName with InsecureDevCookies.
	CookieDomain       string        // the JWT cookie's Domain, as the app's cookie (its default name then __Secure-id_token); "" host-only
	SameSite           http.SameSite // of the JWT cookie: Lax (default) or Strict
	InsecureDevCookies bool          // drops Secure for plain http. Development on localhost only.

	// RetireSessions deletes a converted session and expires its cookie;
	// New refuses it while a route (DefaultMode too) is legacy, not public.
	RetireSessions bool

	ClaimsFromSession ClaimsFunc // session values to a user. Default DefaultClaims.
	// AppCredential spots the app's own credentials besides Authorization
	// (all but a JWT bearer): unless a JWT or session authenticates, as app.
	AppCredential func(r *http.Request) bool
	// SIDKey keys the sid hash and the rollout: MinSIDKeySize secret bytes
	// or more, shared by the fleet, kept across key rotations. Required with Sessions.
	SIDKey []byte

	// CrossOrigin checks cookie-authenticated unsafe requests. Default: a
	// new http.CrossOriginProtection; add the app's trusted origins to it.
	CrossOrigin  *http.CrossOriginProtection
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error) // answers a *Rejection. Default WriteError.
	Logger       *slog.Logger                                            // rejections, background errors. Default: discard.
	Now          func() time.Time                                        // the clock. Default time.Now.
}

// Bridge is the dual-mode authenticator, made by New, safe for concurrent use.
type Bridge struct {
	cfg      Config
	ownKeys  []*Key
	verifier *verifier
	revoked  *denylist
	sids     *sidHash
	routes   *routeTable
	counters *counters
	rollout  atomic.Int32
	log      *slog.Logger
	remote   []*remoteKeys
}

// New validates cfg (an error names the wrong field) and fills its
// defaults; no I/O, no goroutine.
func New(cfg Config) (*Bridge, error) {
	routes, public := cfg.Routes, cfg.PublicRoutes // as written, for errors
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	b := &Bridge{
		cfg:      cfg,
		revoked:  newDenylist(),
		routes:   newRouteTable(cfg.Routes, cfg.DefaultMode),
		counters: &counters{since: cfg.Now()},
		log:      cfg.Logger,
	}
	if cfg.Sessions != nil {
		b.sids = newSIDHash(cfg.SIDKey)
	}
	b.rollout.Store(100)
	b.ownKeys = append([]*Key{cfg.SigningKey}, cfg.VerificationKeys...)
	issuers := []*issuer{ownIssuer(cfg)}
	for _, t := range cfg.TrustedIssuers {
		rk := &remoteKeys{cfg: t, log: cfg.Logger}
		b.remote = append(b.remote, rk)
		issuers = append(issuers, rk.issuer(cfg.Leeway, cfg.Now))
	}
	b.verifier = newVerifier(issuers, cfg.MaxTokenSize, cfg.Now, cfg.CacheSize, b.revoked)
	for _, rk := range b.remote {
		rk.cache = b.verifier.cache
	}
	if cfg.Router != nil {
		w := walkRouter(cfg.Router)
		if err := w.check(routes, public); err != nil {
			return nil, err
		}
		if dups := w.duplicates(); len(dups) > 0 {
			cfg.Logger.Warn("bridge: routes share a path template, and so their counters and mode",
				slog.Any("templates", dups))
		}
		b.routes.remember(w)
	}
	if cfg.Fleet != nil {
		if err := cfg.Fleet.Attach(b); err != nil {
			return nil, fmt.Errorf("bridge: Config.Fleet: %w", err)
		}
	}
	return b, nil
}

// fill validates c and sets its defaults.
func (c *Config) fill() error {
	if c.SigningKey == nil {
		return errors.New("bridge: Config.SigningKey is required")
	}
	if !c.SigningKey.CanSign() {
		return errors.New("bridge: Config.SigningKey holds no private key")
	}
	for i, k := range c.VerificationKeys {
		if k == nil {
			return fmt.Errorf("bridge: Config.VerificationKeys[%d] is nil", i)
		}
	}
	if c.Issuer == "" || strings.ContainsAny(c.Issuer, " \t\r\n") {
		return errors.New("bridge: Config.Issuer is required, without spaces")
	}
	if c.Audience == "" {
		return errors.New("bridge: Config.Audience is required")
	}
	seen := map[string]bool{c.Issuer: true}
	c.TrustedIssuers = slices.Clone(c.TrustedIssuers) // fill writes defaults into them
	for i := range c.TrustedIssuers {
		t := &c.TrustedIssuers[i]
		if err := t.fill(i); err != nil {
			return err
		}
		if seen[t.Issuer] {
			return fmt.Errorf("bridge: Config.TrustedIssuers[%d].Issuer %q is named twice (or is Config.Issuer)", i, t.Issuer)
		}
		seen[t.Issuer] = true
	}
	if err := c.fillRoutes(); err != nil {
		return err
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.TokenTTL < time.Minute {
		return fmt.Errorf("bridge: Config.TokenTTL: %v is shorter than a minute", c.TokenTTL)
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Leeway < 0 || c.Leeway > MaxLeeway {
		return fmt.Errorf("bridge: Config.Leeway: %v is outside 0..%v", c.Leeway, MaxLeeway)
	}
	if c.MaxTokenSize == 0 {
		c.MaxTokenSize = DefaultMaxTokenSize
	}
	if c.MaxTokenSize < 0 {
		return fmt.Errorf("bridge: Config.MaxTokenSize: %d is negative", c.MaxTokenSize)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheSize < 0 && c.CacheSize != NoCache {
		return fmt.Errorf("bridge: Config.CacheSize: %d is negative (NoCache disables the cache)", c.CacheSize)
	}
	if c.CookieName == "" {
		switch {
		case c.InsecureDevCookies:
			c.CookieName = DevCookieName
		case c.CookieDomain != "":
			c.CookieName = "__Secure-" + DevCookieName // a __Host- cookie has no Domain
		default:
			c.CookieName = DefaultCookieName
		}
	}
	if c.CookieDomain != "" && strings.HasPrefix(c.CookieName, "__Host-") {
		return errors.New("bridge: Config.CookieName: a __Host- cookie has no Domain; unset CookieDomain or name the cookie otherwise")
	}
	if c.Sessions != nil && c.Sessions.CookieName() == c.CookieName {
		return fmt.Errorf("bridge: Config.CookieName %q is the legacy session cookie's name", c.CookieName)
	}
	switch c.SameSite {
	case 0:
		c.SameSite = http.SameSiteLaxMode
	case http.SameSiteLaxMode, http.SameSiteStrictMode:
	default:
		return errors.New("bridge: Config.SameSite must be Lax or Strict")
	}
	if strings.HasPrefix(c.CookieName, "__Host-") && c.InsecureDevCookies {
		return errors.New("bridge: Config.CookieName: a __Host- cookie needs Secure; unset InsecureDevCookies")
	}
	if c.Sessions != nil && len(c.SIDKey) < MinSIDKeySize {
		return fmt.Errorf("bridge: Config.SIDKey: %d bytes, want at least %d secret bytes shared by the fleet and kept across signing-key rotations (such as an HMAC of the legacy cookie's hash key)", len(c.SIDKey), MinSIDKeySize)
	}
	c.SIDKey = slices.Clone(c.SIDKey)
	if c.ClaimsFromSession == nil {
		c.ClaimsFromSession = DefaultClaims
	}
	if c.CrossOrigin == nil {
		c.CrossOrigin = http.NewCrossOriginProtection()
	}
	if c.ErrorHandler == nil {
		c.ErrorHandler = WriteError
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// fillRoutes checks the modes, keys Routes and PublicRoutes by RouteLabel,
// folds PublicRoutes into Routes (as legacy) and checks that
// RetireSessions leaves no legacy route.
func (c *Config) fillRoutes() error {
	if c.DefaultMode >= numModes {
		return fmt.Errorf("bridge: Config.DefaultMode: invalid %v", c.DefaultMode)
	}
	routes := make(Routes, len(c.Routes)+len(c.PublicRoutes))
	written := make(map[string]string, len(c.Routes))
	for _, tmpl := range slices.Sorted(maps.Keys(c.Routes)) {
		m := c.Routes[tmpl]
		if err := CheckRouteMode(tmpl, m); err != nil {
			return fmt.Errorf("bridge: Config.Routes[%q]: %w", tmpl, err)
		}
		label := RouteLabel(tmpl)
		if prev, ok := written[label]; ok && routes[label] != m {
			return fmt.Errorf("bridge: Config.Routes: %q and %q are one route, %q, given two modes", prev, tmpl, label)
		}
		routes[label], written[label] = m, tmpl
	}
	public := make([]string, 0, len(c.PublicRoutes))
	for _, tmpl := range c.PublicRoutes {
		label := RouteLabel(tmpl)
		if m, ok := routes[label]; ok && m != Legacy {
			return fmt.Errorf("bridge: Config.PublicRoutes: %q is also in Config.Routes as %v", tmpl, m)
		}
		routes[label] = Legacy
		if !slices.Contains(public, label) {
			public = append(public, label)
		}
	}
	c.Routes = routes
	c.PublicRoutes = public
	if !c.RetireSessions {
		return nil
	}
	if c.Sessions == nil {
		return errors.New("bridge: Config.RetireSessions needs Config.Sessions")
	}
	if c.DefaultMode == Legacy {
		return errors.New("bridge: Config.RetireSessions: DefaultMode is legacy; every route must be dual or jwt before sessions are retired (a legacy route would lose its users)")
	}
	for tmpl, m := range c.Routes {
		if m == Legacy && !slices.Contains(c.PublicRoutes, tmpl) {
			return fmt.Errorf("bridge: Config.RetireSessions: route %q is legacy; every route must be dual or jwt (or public) before sessions are retired", tmpl)
		}
	}
	return nil
}

// Config returns a copy of the effective configuration: defaults filled
// in, routes by RouteLabel, PublicRoutes in Routes as legacy.
func (b *Bridge) Config() Config {
	c := b.cfg
	c.Routes = maps.Clone(c.Routes)
	c.PublicRoutes = slices.Clone(c.PublicRoutes)
	c.VerificationKeys = slices.Clone(c.VerificationKeys)
	c.TrustedIssuers = slices.Clone(c.TrustedIssuers)
	c.SIDKey = slices.Clone(c.SIDKey)
	return c
}

// ownIssuer binds the signing and verification keys to cfg.Issuer, each
// pinned to its algorithm.
func ownIssuer(cfg Config) *issuer {
	keys := map[string]*Key{}
	var algs []string
	for _, k := range append([]*Key{cfg.SigningKey}, cfg.VerificationKeys...) {
		keys[k.kid] = k
		algs = append(algs, k.alg)
	}
	only := cfg.SigningKey
	if len(keys) > 1 {
		only = nil // kid required
	}
	return &issuer{
		name:      cfg.Issuer,
		own:       true,
		validator: newIssuerValidator(cfg.Issuer, []string{cfg.Audience}, cfg.Leeway, cfg.Now),
		algs:      algs,
		key: func(kid, alg string) (any, error) {
			k := only
			if kid != "" || k == nil {
				k = keys[kid]
			}
			if k == nil {
				return nil, errors.New("unknown kid")
			}
			if k.alg != alg {
				return nil, fmt.Errorf("key %s is pinned to %s, token says %s", k.kid, k.alg, alg)
			}
			return k.verify, nil
		},
	}
}

// SetRolloutPercent sets the share of sessions, 0 to 100 (New: 100),
// converted on dual routes, chosen by a keyed hash of the session ID.
func (b *Bridge) SetRolloutPercent(p int) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("bridge: rollout percent %d is outside 0..100", p)
	}
	b.rollout.Store(int32(p))
	return nil
}

// SetMode overrides a route's mode at run time.
func (b *Bridge) SetMode(route string, m Mode) error {
	if err := CheckRouteMode(route, m); err != nil {
		return err
	}
	public := slices.Contains(b.cfg.PublicRoutes, RouteLabel(route))
	if public && m != Legacy {
		return fmt.Errorf("bridge: route %q is public (Config.PublicRoutes): it stays legacy", route)
	}
	if m == Legacy && b.cfg.RetireSessions && !public {
		return fmt.Errorf("bridge: route %q cannot go back to legacy while sessions are retired (Config.RetireSessions)", route)
	}
	i := b.routes.add(route)
	if i == idxOther && route != RouteOther {
		return fmt.Errorf("bridge: too many routes (max %d)", MaxRoutes)
	}
	b.routes.modes[i].Store(uint32(m))
	return nil
}

// ResetMode drops a run-time override of a route's mode.
func (b *Bridge) ResetMode(route string) {
	if i, ok := b.routes.find(route); ok {
		b.routes.modes[i].Store(noOverride)
	}
}

// Mode returns the current mode of a route.
func (b *Bridge) Mode(route string) Mode {
	if i, ok := b.routes.find(route); ok {
		return b.routes.mode(i)
	}
	if m, ok := b.cfg.Routes[RouteLabel(route)]; ok {
		return m
	}
	return b.cfg.DefaultMode
}
