package bridge

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config fields left zero.
const (
	DefaultTokenTTL     = 15 * time.Minute
	DefaultLeeway       = 30 * time.Second
	MaxLeeway           = 60 * time.Second
	DefaultMaxTokenSize = 8 << 10
	DefaultCookieName   = "id_token"
	DefaultCacheSize    = 10000

	DefaultFlushInterval       = 5 * time.Second
	DefaultFlushTimeout        = 2 * time.Second
	DefaultModeRefreshInterval = 2 * time.Second
	DefaultRetention           = 8 * 24 * time.Hour
	DefaultReadyAfter          = 24 * time.Hour
)

// Config configures a Bridge. Fields left zero take the default their
// comment names.
type Config struct {
	// Sessions reads the legacy session: StoreSource(store, name) with the
	// app's own store, or a read-only Redis source (BojSource,
	// RbcervillaSource, RedisSource). Nil: no sessions, JWTs only.
	Sessions SessionSource

	// Redis is the client for fleet-wide state: counters flushed by Run,
	// run-time modes, revocations. Nil: counts stay in-process and modes
	// are the configured ones. Set ContextTimeoutEnabled on it.
	Redis redis.UniversalClient
	// RedisPrefix names the fleet's keys ({prefix}:…). Default
	// "sessionbridge". Instances of one fleet share it.
	RedisPrefix string
	// InstanceID names this instance in the flush bookkeeping. Default: a
	// random ID per process.
	InstanceID string
	// FlushInterval is the period of the counter flush. Default 5s.
	FlushInterval time.Duration
	// FlushTimeout bounds each flush and mode refresh, and the final flush
	// in Close. Default 2s.
	FlushTimeout time.Duration
	// ModeRefreshInterval is how often run-time modes are read from Redis.
	// Default 2s.
	ModeRefreshInterval time.Duration
	// Retention is how long hourly counts stay in Redis. Default 8 days.
	Retention time.Duration
	// ReadyAfter is how long a dual route's session share must stay at
	// zero before the report calls it ready to switch to jwt. Default 24h.
	ReadyAfter time.Duration
	// Registerer, when set, gets the bridge's Prometheus collector.
	Registerer prometheus.Registerer

	// SigningKey signs the tokens the bridge mints; its public part (or
	// secret) verifies them. Required.
	SigningKey *Key
	// VerificationKeys are previous keys still accepted until the tokens
	// they signed expire (key rotation).
	VerificationKeys []*Key

	// TrustedIssuers are external identity providers whose tokens are
	// accepted, each with its own keys (from its JWKS, loaded by Run),
	// audiences and algorithms.
	TrustedIssuers []TrustedIssuer

	// Issuer is the iss of minted tokens, and the only issuer accepted for
	// the bridge's own keys. Required.
	Issuer string
	// Audience is the aud of minted tokens, and required in every token
	// of this issuer. Required.
	Audience string

	// Router, when set, is walked by New so that every route has its
	// counters from the start. Routes met later are added on first sight.
	Router *mux.Router
	// Routes sets the mode of routes by mux path template.
	Routes Routes
	// PublicRoutes are path templates that need no credentials (the login
	// page, health checks, the JWKS): they always run in legacy mode, so
	// they never refuse anyone, and they do not hold back RetireSessions.
	PublicRoutes []string
	// DefaultMode is the mode of routes not in Routes. Default Legacy.
	DefaultMode Mode

	// RolloutPercent is the share of sessions, 1 to 100, converted on dual
	// routes; each session's share is fixed by a hash of its ID, so a user
	// does not flap. Default 100. Use SetRolloutPercent for 0.
	RolloutPercent int

	// TokenTTL is the lifetime of minted tokens, never past the session's
	// remaining TTL. Default 15 minutes.
	TokenTTL time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s;
	// at most 60s.
	Leeway time.Duration
	// MaxTokenSize caps the size of a token, checked before any decoding.
	// Default 8 KiB.
	MaxTokenSize int
	// CacheSize bounds the cache of verified tokens. Default 10000;
	// negative disables the cache.
	CacheSize int

	// CookieName is the JWT cookie's name. Default "id_token"; a name
	// with the "__Host-" prefix is recommended in production.
	CookieName string
	// SameSite of the JWT cookie: Lax (default) or Strict.
	SameSite http.SameSite
	// InsecureDevCookies drops the Secure attribute so cookies work on
	// plain http. Dangerous: development on localhost only.
	InsecureDevCookies bool

	// RetireSessions deletes the legacy session from the store and
	// expires its cookie right after a successful conversion. New refuses
	// it unless every route is dual or jwt (DefaultMode included): a legacy
	// route would lose its users. Turning it off again is safe: users log
	// in again only once their JWT has expired.
	RetireSessions bool

	// ClaimsFromSession maps session values to claims. Default
	// DefaultClaims.
	ClaimsFromSession ClaimsFunc
	// SIDKey keys the hash of session IDs put in tokens as sid and used
	// for the rollout. Instances of one fleet must share it, and it should
	// outlive signing-key rotations (a new SIDKey reshuffles the rollout
	// and stops logout from revoking older tokens by sid). Default: derived
	// from the signing key, which is only right until the first rotation.
	SIDKey []byte

	// CrossOrigin checks unsafe requests authenticated by a cookie.
	// Default: a new http.CrossOriginProtection (Sec-Fetch-Site and
	// Origin against Host); add trusted origins to it as needed.
	CrossOrigin *http.CrossOriginProtection

	// ErrorHandler answers refused requests. The error is a *Rejection.
	// Default: a short JSON body (see WriteError).
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Logger receives rejections and background errors. Default: discard.
	Logger *slog.Logger

	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Bridge is the dual-mode authenticator. Build it with New; it is safe for
// concurrent use.
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
	flusher  *flusher // nil without Config.Redis
	remote   []*remoteKeys

	closeOnce sync.Once
	closed    chan struct{}
}

// New validates cfg, fills its defaults and returns a Bridge. It does no
// I/O and starts no goroutine. An error names the field that is wrong.
func New(cfg Config) (*Bridge, error) {
	if cfg.SigningKey == nil {
		return nil, errors.New("bridge: Config.SigningKey is required")
	}
	if !cfg.SigningKey.CanSign() {
		return nil, errors.New("bridge: Config.SigningKey holds no private key")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("bridge: Config.Issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("bridge: Config.Audience is required")
	}
	if cfg.DefaultMode >= numModes {
		return nil, fmt.Errorf("bridge: Config.DefaultMode: invalid %v", cfg.DefaultMode)
	}
	for tmpl, m := range cfg.Routes {
		if m >= numModes {
			return nil, fmt.Errorf("bridge: Config.Routes[%q]: invalid %v", tmpl, m)
		}
	}
	if len(cfg.PublicRoutes) > 0 {
		routes := make(Routes, len(cfg.Routes)+len(cfg.PublicRoutes))
		for tmpl, m := range cfg.Routes {
			routes[tmpl] = m
		}
		for _, tmpl := range cfg.PublicRoutes {
			if m, ok := cfg.Routes[tmpl]; ok && m != Legacy {
				return nil, fmt.Errorf("bridge: Config.PublicRoutes: %q is also in Config.Routes as %v", tmpl, m)
			}
			routes[tmpl] = Legacy
		}
		cfg.Routes = routes
	}
	if cfg.RetireSessions {
		if cfg.Sessions == nil {
			return nil, errors.New("bridge: Config.RetireSessions needs Config.Sessions")
		}
		if cfg.DefaultMode == Legacy {
			return nil, errors.New("bridge: Config.RetireSessions: DefaultMode is legacy; every route must be dual or jwt before sessions are retired (a legacy route would lose its users)")
		}
		for tmpl, m := range cfg.Routes {
			if m == Legacy && !slices.Contains(cfg.PublicRoutes, tmpl) {
				return nil, fmt.Errorf("bridge: Config.RetireSessions: route %q is legacy; every route must be dual or jwt (or public) before sessions are retired", tmpl)
			}
		}
	}
	if cfg.RolloutPercent < 0 || cfg.RolloutPercent > 100 {
		return nil, fmt.Errorf("bridge: Config.RolloutPercent: %d is outside 1..100", cfg.RolloutPercent)
	}
	if cfg.RolloutPercent == 0 {
		cfg.RolloutPercent = 100
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < time.Minute {
		return nil, fmt.Errorf("bridge: Config.TokenTTL: %v is shorter than a minute", cfg.TokenTTL)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("bridge: Config.Leeway: %v is outside 0..%v", cfg.Leeway, MaxLeeway)
	}
	if cfg.MaxTokenSize == 0 {
		cfg.MaxTokenSize = DefaultMaxTokenSize
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CookieName == "" {
		cfg.CookieName = DefaultCookieName
	}
	if cfg.Sessions != nil && cfg.Sessions.CookieName() == cfg.CookieName {
		return nil, fmt.Errorf("bridge: Config.CookieName %q is the legacy session cookie's name", cfg.CookieName)
	}
	switch cfg.SameSite {
	case 0:
		cfg.SameSite = http.SameSiteLaxMode
	case http.SameSiteLaxMode, http.SameSiteStrictMode:
	default:
		return nil, errors.New("bridge: Config.SameSite must be Lax or Strict")
	}
	if strings.HasPrefix(cfg.CookieName, "__Host-") && cfg.InsecureDevCookies {
		return nil, errors.New("bridge: Config.CookieName: a __Host- cookie needs Secure; unset InsecureDevCookies")
	}
	if cfg.ClaimsFromSession == nil {
		cfg.ClaimsFromSession = DefaultClaims
	}
	if cfg.CrossOrigin == nil {
		cfg.CrossOrigin = http.NewCrossOriginProtection()
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = WriteError
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultFlushTimeout
	}
	if cfg.ModeRefreshInterval <= 0 {
		cfg.ModeRefreshInterval = DefaultModeRefreshInterval
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Retention < time.Hour {
		return nil, fmt.Errorf("bridge: Config.Retention: %v is shorter than an hour", cfg.Retention)
	}
	if cfg.ReadyAfter <= 0 {
		cfg.ReadyAfter = DefaultReadyAfter
	}
	if cfg.RedisPrefix == "" {
		cfg.RedisPrefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(cfg.RedisPrefix, "{}") {
		return nil, errors.New("bridge: Config.RedisPrefix must not contain braces (it becomes the hash tag)")
	}
	if len(cfg.SIDKey) == 0 {
		cfg.SIDKey = deriveSIDKey(cfg.SigningKey)
	}

	b := &Bridge{
		cfg:      cfg,
		revoked:  newDenylist(),
		sids:     newSIDHash(cfg.SIDKey),
		routes:   newRouteTable(cfg.Routes, cfg.DefaultMode),
		counters: new(counters),
		log:      cfg.Logger,
		closed:   make(chan struct{}),
	}
	b.rollout.Store(int32(cfg.RolloutPercent))
	own, err := ownIssuer(cfg)
	if err != nil {
		return nil, err
	}
	b.ownKeys = append([]*Key{cfg.SigningKey}, cfg.VerificationKeys...)
	issuers := []*issuer{own}
	seen := map[string]bool{cfg.Issuer: true}
	for i := range cfg.TrustedIssuers {
		t := cfg.TrustedIssuers[i]
		if err := t.fill(i); err != nil {
			return nil, err
		}
		if seen[t.Issuer] {
			return nil, fmt.Errorf("bridge: Config.TrustedIssuers[%d].Issuer %q is named twice (or is Config.Issuer)", i, t.Issuer)
		}
		seen[t.Issuer] = true
		rk := &remoteKeys{cfg: t, log: cfg.Logger}
		b.remote = append(b.remote, rk)
		issuers = append(issuers, rk.issuer(cfg.Leeway, cfg.Now))
	}
	b.verifier = newVerifier(issuers, cfg.MaxTokenSize, cfg.Now, cfg.CacheSize, b.revoked)
	if cfg.Router != nil {
		b.routes.walk(cfg.Router)
	}
	if cfg.Redis != nil {
		b.flusher = newFlusher(b)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(b.Collector()); err != nil {
			return nil, fmt.Errorf("bridge: Config.Registerer: %w", err)
		}
	}
	return b, nil
}

// ownIssuer binds the signing and verification keys to cfg.Issuer, each
// pinned to its algorithm.
func ownIssuer(cfg Config) (*issuer, error) {
	keys := map[string]*Key{}
	var algs []string
	for i, k := range append([]*Key{cfg.SigningKey}, cfg.VerificationKeys...) {
		if k == nil {
			return nil, fmt.Errorf("bridge: Config.VerificationKeys[%d] is nil", i-1)
		}
		keys[k.kid] = k
		algs = append(algs, k.alg)
	}
	only := cfg.SigningKey
	if len(keys) > 1 {
		only = nil // kid required
	}
	return &issuer{
		name:      cfg.Issuer,
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
	}, nil
}

func deriveSIDKey(k *Key) []byte {
	m := hmac.New(sha256.New, []byte("sessionbridge sid key v1"))
	switch s := k.sign.(type) {
	case []byte:
		m.Write(s)
	default:
		pem, _ := MarshalKeyPEM(k)
		m.Write(pem)
	}
	return m.Sum(nil)
}

// SetRolloutPercent changes the share of sessions converted on dual routes,
// 0 to 100, at run time.
func (b *Bridge) SetRolloutPercent(p int) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("bridge: rollout percent %d is outside 0..100", p)
	}
	b.rollout.Store(int32(p))
	return nil
}

// SetMode overrides the mode of a route (a mux path template) at run time.
func (b *Bridge) SetMode(route string, m Mode) error {
	if m >= numModes {
		return fmt.Errorf("bridge: invalid mode %v", m)
	}
	if slices.Contains(b.cfg.PublicRoutes, route) && m != Legacy {
		return fmt.Errorf("bridge: route %q is public (Config.PublicRoutes): it stays legacy", route)
	}
	if m == Legacy && b.cfg.RetireSessions && !slices.Contains(b.cfg.PublicRoutes, route) {
		return fmt.Errorf("bridge: route %q cannot go back to legacy while sessions are retired (Config.RetireSessions)", route)
	}
	i := b.routes.add(route)
	if i == idxOther && route != RouteOther {
		return fmt.Errorf("bridge: too many routes (max %d)", MaxRoutes)
	}
	b.routes.modes[i].Store(uint32(m))
	return nil
}

// ResetMode drops a run-time override: the route's mode is the configured
// one again.
func (b *Bridge) ResetMode(route string) {
	if i, ok := (*b.routes.index.Load())[route]; ok {
		b.routes.modes[i].Store(noOverride)
	}
}

// Mode returns the current mode of a route.
func (b *Bridge) Mode(route string) Mode {
	if i, ok := (*b.routes.index.Load())[route]; ok {
		return b.routes.mode(i)
	}
	if m, ok := b.cfg.Routes[route]; ok {
		return m
	}
	return b.cfg.DefaultMode
}
