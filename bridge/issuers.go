package bridge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/time/rate"
)

// Defaults of TrustedIssuer fields left zero.
const (
	DefaultJWKSRefreshInterval = time.Hour
	DefaultUnknownKIDInterval  = time.Minute
	DefaultJWKSTimeout         = 5 * time.Second
	DefaultJWKSMaxBody         = 1 << 20
	// unknownKIDWait bounds how long a request may wait for a JWKS
	// refetch triggered by an unknown kid.
	unknownKIDWait = time.Second
)

// TrustedIssuer is an external identity provider (Auth0, Keycloak, ...)
// whose tokens the bridge accepts. Its keys come from its JWKS and are
// bound to it: they verify tokens naming this issuer only.
type TrustedIssuer struct {
	Issuer             string        // the exact iss of its tokens. Required.
	Audiences          []string      // a token must name one of them. Required.
	JWKSURL            string        // its public keys: https (http on loopback only). Required.
	Algorithms         []string      // asymmetric only (RS*, PS*, ES256, ES384, EdDSA). Default RS256, ES256.
	RefreshInterval    time.Duration // of the background refresh. Default 1h.
	UnknownKIDInterval time.Duration // least time between refetches for an unknown kid. Default 1m.
	Timeout            time.Duration // bounds each fetch. Default 5s.
	MaxBodySize        int64         // caps the JWKS response. Default 1 MiB.
	HTTPClient         *http.Client  // fetches the JWKS. Default: a client with Timeout.
	// Link maps a verified token to a local user, once per token; nil or
	// ok false: the IdP's own identity (no Subject, no roles). Link only on
	// what the IdP vouches for, such as a verified email.
	Link func(ctx context.Context, c Claims) (u LocalUser, ok bool, err error)
}

// LocalUser is a local user: a session's (ClaimsFunc), or the one an IdP
// identity is linked to (Link).
type LocalUser struct {
	Subject, Name string
	Roles         []string
}

var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}

func (t *TrustedIssuer) fill(i int) error {
	field := fmt.Sprintf("bridge: Config.TrustedIssuers[%d]", i)
	if t.Issuer == "" || strings.ContainsAny(t.Issuer, " \t\r\n") {
		// A space separates issuer and jti or sub in revocations.
		return fmt.Errorf("%s.Issuer is required, without spaces", field)
	}
	if len(t.Audiences) == 0 {
		return fmt.Errorf("%s.Audiences: at least one audience is required", field)
	}
	u, err := url.Parse(t.JWKSURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s.JWKSURL %q: want an https URL", field, t.JWKSURL)
	}
	// Keys fetched over plain http can be swapped by anyone on the path:
	// http is for a test IdP on this machine only.
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%s.JWKSURL %q: want an https URL (http only on loopback)", field, t.JWKSURL)
	}
	if len(t.Algorithms) == 0 {
		t.Algorithms = []string{"RS256", "ES256"}
	}
	for _, a := range t.Algorithms {
		if !slices.Contains(asymmetricAlgs, a) {
			return fmt.Errorf("%s.Algorithms: %q is not an asymmetric algorithm the bridge accepts", field, a)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RefreshInterval", &t.RefreshInterval, DefaultJWKSRefreshInterval},
		{"UnknownKIDInterval", &t.UnknownKIDInterval, DefaultUnknownKIDInterval},
		{"Timeout", &t.Timeout, DefaultJWKSTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("%s.%s: %v is negative", field, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if t.MaxBodySize < 0 {
		return fmt.Errorf("%s.MaxBodySize: %d is negative", field, t.MaxBodySize)
	}
	if t.MaxBodySize == 0 {
		t.MaxBodySize = DefaultJWKSMaxBody
	}
	if t.HTTPClient == nil {
		t.HTTPClient = &http.Client{Timeout: t.Timeout}
	}
	return nil
}

// Run loads the trusted issuers' JWKS and keeps them fresh until ctx ends
// (their tokens are refused until then). It returns nil.
func (b *Bridge) Run(ctx context.Context) error {
	for _, rk := range b.remote {
		go rk.start(ctx)
	}
	<-ctx.Done()
	return nil
}

// remoteKeys holds an external issuer's JWKS, loaded by Run.
type remoteKeys struct {
	cfg     TrustedIssuer
	log     *slog.Logger
	storage atomic.Pointer[jwkset.Storage] // nil until Run starts it
	// cache holds the tokens verified with these keys, among others.
	cache *tokenCache
}

// keysRemoved drops this issuer's cached tokens after its JWKS dropped a
// key, so that none signed by that key verifies from the cache again.
func (rk *remoteKeys) keysRemoved() {
	n := rk.cache.purgeIf(func(e *cacheEntry) bool { return e.claims.Issuer == rk.cfg.Issuer })
	rk.log.Info("bridge: a key left the issuer's JWKS; its cached tokens are verified again",
		"issuer", rk.cfg.Issuer, "tokens", n)
}

// issuer returns the verifier's view of a trusted issuer.
func (rk *remoteKeys) issuer(leeway time.Duration, now func() time.Time) *issuer {
	return &issuer{
		name:      rk.cfg.Issuer,
		validator: newIssuerValidator(rk.cfg.Issuer, rk.cfg.Audiences, leeway, now),
		algs:      rk.cfg.Algorithms,
		key:       rk.key,
		link:      rk.cfg.Link,
	}
}

// key finds the verification key for kid, pinned to the algorithm its JWK
// names (or its key type implies).
func (rk *remoteKeys) key(kid, alg string) (any, error) {
	sp := rk.storage.Load()
	if sp == nil {
		return nil, errors.New("issuer keys not loaded yet")
	}
	if kid == "" {
		return nil, errors.New("kid required for external issuers")
	}
	if !slices.Contains(rk.cfg.Algorithms, alg) {
		return nil, fmt.Errorf("algorithm %s not allowed for this issuer", alg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), unknownKIDWait+rk.cfg.Timeout)
	defer cancel()
	jwk, err := (*sp).KeyRead(ctx, kid)
	if err != nil {
		return nil, fmt.Errorf("kid %q not in the issuer's key set (%v)", capped(kid), cut(err.Error(), maxLoggedValue))
	}
	key := jwk.Key()
	if _, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		// A JWKS publishing private (or symmetric) key material: anyone
		// can sign with it, so nothing it signs is trusted.
		return nil, fmt.Errorf("key %s is published with its private part", kid)
	}
	pinned := jwk.Marshal().ALG.String()
	if pinned == "" {
		pinned = algForKey(key, alg)
	}
	if pinned != alg {
		return nil, fmt.Errorf("key %s is pinned to %s, token says %s", kid, pinned, alg)
	}
	if algForKey(key, alg) != alg {
		return nil, fmt.Errorf("key %s of type %T cannot verify %s", kid, key, alg)
	}
	if jwk.Marshal().USE != "" && jwk.Marshal().USE != jwkset.UseSig {
		return nil, fmt.Errorf("key %s is not for signatures", kid)
	}
	return key, nil
}

// algForKey pins a JWK without alg by its key type: RSA keys to the RSA
// algorithm the token asks for among RS*/PS*, EC keys to their curve's
// algorithm, Ed25519 to EdDSA. Never an HMAC algorithm.
func algForKey(key any, alg string) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if len(alg) == 5 && (alg[:2] == "RS" || alg[:2] == "PS") {
			return alg
		}
		return "RS256"
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return "ES256"
		case 384:
			return "ES384"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}

// start fetches the JWKS and keeps it fresh until ctx ends. A failed or
// empty fetch keeps the last good keys; the first fetch may fail (the IdP
// down at start): the issuer's tokens are refused until one succeeds.
func (rk *remoteKeys) start(ctx context.Context) {
	c := rk.cfg
	client := *c.HTTPClient
	client.Transport = cappedTransport{base: transportOf(c.HTTPClient), max: c.MaxBodySize}
	onError := func(ctx context.Context, err error) {
		rk.log.LogAttrs(ctx, slog.LevelWarn, "bridge: JWKS refresh failed; keeping the last good keys",
			slog.String("issuer", c.Issuer), slog.String("error", err.Error()))
	}
	store, err := jwkset.NewStorageFromHTTP(c.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    &client,
		Ctx:                       ctx,
		HTTPTimeout:               c.Timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       onError,
		RefreshInterval:           c.RefreshInterval,
		Storage:                   &lastGoodKeys{MemoryJWKSet: jwkset.NewMemoryStorage(), onEmpty: onError, onRemoved: rk.keysRemoved},
	})
	if err != nil {
		onError(ctx, err)
		return
	}
	all, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{c.JWKSURL: store},
		RefreshUnknownKID: rate.NewLimiter(rate.Every(c.UnknownKIDInterval), 1),
		// A request never waits for the limiter: past the window it
		// fails at once, and a refetch it triggers is bounded.
		RateLimitWaitMax: unknownKIDWait,
	})
	if err != nil {
		onError(ctx, err)
		return
	}
	rk.storage.Store(&all)
}

// lastGoodKeys refuses to replace a key set with an empty one: an IdP
// answering {"keys":[]} by mistake does not lock its users out.
// When a refresh drops a key, onRemoved runs after the replacement: the
// tokens it signed that are cached as verified must go too.
type lastGoodKeys struct {
	*jwkset.MemoryJWKSet
	onEmpty   func(context.Context, error)
	onRemoved func()
}

func (s *lastGoodKeys) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if len(given) == 0 {
		s.onEmpty(ctx, errors.New("JWKS has no usable key"))
		return nil
	}
	old, err := s.MemoryJWKSet.KeyReadAll(ctx)
	if err != nil {
		return err
	}
	kept := make(map[string]bool, len(given))
	for _, k := range given {
		kept[k.Marshal().KID] = true
	}
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	for _, k := range old {
		if !kept[k.Marshal().KID] {
			s.onRemoved()
			break
		}
	}
	return nil
}

// isLoopbackHost reports whether host (no port) is localhost or a loopback
// IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// cappedTransport fails response bodies longer than max bytes.
type cappedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: t.max}
	return resp, nil
}

type cappedBody struct {
	io.ReadCloser
	left int64
}

var errJWKSTooLarge = errors.New("bridge: JWKS response larger than the cap")

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errJWKSTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte past the cap reveals an oversized body
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), errJWKSTooLarge // the bytes within the cap
	}
	return n, err
}
