// Command downstream is a Go service behind the monolith that verifies the
// monolith's JWTs knowing nothing but its JWKS URL, its issuer and the
// audience: it shares no secret and no session store with it. The monolith
// calls it through bridge.Transport, which puts the caller's JWT (or, for a
// session that was not converted, a short-lived one minted from it) in the
// Authorization header.
//
// Verification uses github.com/MicahParks/keyfunc/v3 (the JWK Set, cached
// and refreshed, with a rate-limited refresh on an unknown kid) and
// github.com/golang-jwt/jwt/v5: ES256, EdDSA or RS256 only; iss, aud and exp
// required.
//
// Flags (each defaults to the environment variable in brackets):
//
//	-addr      listen address [ADDR] (default 127.0.0.1:8090)
//	-jwks-url  the monolith's JWK Set, e.g. http://127.0.0.1:8080/.well-known/jwks.json [JWKS_URL]
//	-issuer    the iss the monolith puts in its tokens [ISSUER]
//	-audience  the aud the tokens must name [AUDIENCE]
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxTokenSize caps the token, checked before any decoding.
	maxTokenSize = 8 << 10
	// leeway is the clock skew allowed on exp, nbf and iat.
	leeway = 30 * time.Second
	// jwksRefresh is how often the JWK Set is fetched again (the monolith
	// serves it with max-age=300).
	jwksRefresh = 5 * time.Minute
	// jwksTimeout bounds each JWK Set fetch.
	jwksTimeout = 5 * time.Second
)

// algorithms are the only signing algorithms accepted: never HS256 (a
// downstream holds no secret) nor "none".
var algorithms = []string{"ES256", "EdDSA", "RS256"}

// config is what the service needs to verify tokens.
type config struct {
	JWKSURL  string
	Issuer   string
	Audience string
	// Client fetches the JWK Set. Default http.DefaultClient.
	Client *http.Client
}

// claims are the token's claims the service reads.
type claims struct {
	jwt.RegisteredClaims
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

// verifier checks tokens against the monolith's JWK Set.
type verifier struct {
	keys   keyfunc.Keyfunc
	parser *jwt.Parser
}

// newVerifier fetches the JWK Set once (an error if it cannot) and keeps it
// fresh until ctx ends.
func newVerifier(ctx context.Context, cfg config) (*verifier, error) {
	switch {
	case cfg.JWKSURL == "":
		return nil, errors.New("the JWKS URL is required")
	case cfg.Issuer == "":
		return nil, errors.New("the issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("the audience is required")
	}
	failFast := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    cfg.Client,
		HTTPTimeout:               jwksTimeout,
		RefreshInterval:           jwksRefresh,
		RateLimitWaitMax:          jwksTimeout,
		NoErrorReturnFirstHTTPReq: &failFast,
	})
	if err != nil {
		return nil, fmt.Errorf("JWK Set %s: %w", cfg.JWKSURL, err)
	}
	return &verifier{
		keys: kf,
		parser: jwt.NewParser(
			jwt.WithValidMethods(algorithms),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(leeway),
		),
	}, nil
}

// verify returns the claims of a valid token.
func (v *verifier) verify(ctx context.Context, tok string) (*claims, error) {
	if len(tok) > maxTokenSize {
		return nil, fmt.Errorf("token of %d bytes", len(tok))
	}
	c := new(claims)
	if _, err := v.parser.ParseWithClaims(tok, c, v.keys.KeyfuncCtx(ctx)); err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, errors.New("token has no sub")
	}
	return c, nil
}

type claimsKey struct{}

// claimsFrom returns the verified claims of the request.
func claimsFrom(ctx context.Context) (*claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*claims)
	return c, ok
}

// require answers 401 to requests without a valid bearer token.
func (v *verifier) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") || strings.TrimSpace(h[7:]) == "" {
			unauthorized(w, "no_credentials", `Bearer`)
			return
		}
		c, err := v.verify(r.Context(), strings.TrimSpace(h[7:]))
		if err != nil {
			slog.InfoContext(r.Context(), "token refused", "error", err)
			unauthorized(w, "invalid_token", `Bearer error="invalid_token"`)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

func unauthorized(w http.ResponseWriter, reason, challenge string) {
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "Unauthorized", "reason": reason})
}

// newServer returns the service's handler: GET /api/whoami (token
// required) answers who the caller is; GET /healthz needs nothing.
func newServer(v *verifier) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/whoami", v.require(http.HandlerFunc(whoami)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

func whoami(w http.ResponseWriter, r *http.Request) {
	c, _ := claimsFrom(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sub":        c.Subject,
		"name":       c.Name,
		"roles":      c.Roles,
		"expires_at": c.ExpiresAt.Time.UTC().Format(time.RFC3339),
	})
}

func main() {
	fs := flag.NewFlagSet("downstream", flag.ExitOnError)
	addr := fs.String("addr", cmp.Or(os.Getenv("ADDR"), "127.0.0.1:8090"), "listen address [ADDR]")
	var cfg config
	fs.StringVar(&cfg.JWKSURL, "jwks-url", os.Getenv("JWKS_URL"), "the monolith's JWK Set URL [JWKS_URL]")
	fs.StringVar(&cfg.Issuer, "issuer", os.Getenv("ISSUER"), "the iss of the monolith's tokens [ISSUER]")
	fs.StringVar(&cfg.Audience, "audience", os.Getenv("AUDIENCE"), "the aud the tokens must name [AUDIENCE]")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, cfg); err != nil {
		slog.Error("downstream: " + err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, cfg config) error {
	v, err := newVerifier(ctx, cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: newServer(v), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("listening", "url", "http://"+addr, "jwks", cfg.JWKSURL, "issuer", cfg.Issuer, "audience", cfg.Audience)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
