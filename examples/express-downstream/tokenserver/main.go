// Command tokenserver is the Go side of the Express example's test: it
// plays the monolith. It serves a bridge's JWK Set on a free loopback port
// and prints one line of JSON to stdout with the JWKS URL, the issuer, the
// audience and tokens minted through the bridge's public API (a legacy
// session converted on a dual route):
//
//	{"jwks_url": "...", "issuer": "...", "audience": "app",
//	 "token": "...",                  // valid
//	 "token_other_audience": "...",   // same key and issuer, aud "billing"
//	 "token_expired": "...",          // same key, expired an hour ago
//	 "token_other_key": "..."}        // same claims, a key not in the JWKS
//
// All tokens are for sub "1". It runs until SIGINT or SIGTERM, until its
// standard input closes (with -exit-on-eof, so that it dies with the test
// that spawned it), or for -max-life at most.
//
//	go run ./examples/express-downstream/tokenserver -exit-on-eof
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
)

const (
	audience      = "app"
	otherAudience = "billing"
	subject       = "1"
)

// info is the line printed to stdout.
type info struct {
	JWKSURL            string `json:"jwks_url"`
	Issuer             string `json:"issuer"`
	Audience           string `json:"audience"`
	Token              string `json:"token"`
	TokenOtherAudience string `json:"token_other_audience"`
	TokenExpired       string `json:"token_expired"`
	TokenOtherKey      string `json:"token_other_key"`
}

func main() {
	exitOnEOF := flag.Bool("exit-on-eof", false, "exit when standard input closes")
	maxLife := flag.Duration("max-life", 10*time.Minute, "exit after this long in any case")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()
	if *exitOnEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tokenserver:", err)
		os.Exit(1)
	}
}

// run serves the JWKS, writes the info line to out and returns when ctx
// ends.
func run(ctx context.Context, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	key, err := bridge.GenerateKey()
	if err != nil {
		return err
	}
	otherKey, err := bridge.GenerateKey()
	if err != nil {
		return err
	}
	cfg := bridge.Config{SigningKey: key, Issuer: base, Audience: audience}
	b, err := bridge.New(cfg)
	if err != nil {
		return err
	}

	in := info{JWKSURL: base + "/.well-known/jwks.json", Issuer: base, Audience: audience}
	if in.Token, err = mint(cfg); err != nil {
		return err
	}
	other := cfg
	other.Audience = otherAudience
	if in.TokenOtherAudience, err = mint(other); err != nil {
		return err
	}
	expired := cfg
	expired.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	if in.TokenExpired, err = mint(expired); err != nil {
		return err
	}
	forged := cfg
	forged.SigningKey = otherKey
	if in.TokenOtherKey, err = mint(forged); err != nil {
		return err
	}

	r := http.NewServeMux()
	r.Handle("/.well-known/jwks.json", b.JWKSHandler())
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	if err := json.NewEncoder(out).Encode(in); err != nil {
		_ = srv.Close()
		return err
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// mint returns a token minted by a bridge built from cfg, as the monolith
// mints them: a legacy session (in a cookie store) converted on a dual
// route, read from the response's Set-Cookie.
func mint(cfg bridge.Config) (string, error) {
	store := sessions.NewCookieStore([]byte("tokenserver-session-hash-key-32-bytes+"))
	cfg.Sessions = bridge.StoreSource(store, "session")
	cfg.SIDKey = []byte("tokenserver-sid-key-at-least-32-bytes")
	cfg.Routes = bridge.Routes{"/api/me": bridge.Dual}
	b, err := bridge.New(cfg)
	if err != nil {
		return "", err
	}
	r := mux.NewRouter()
	r.HandleFunc("/api/me", func(http.ResponseWriter, *http.Request) {})
	r.Use(b.Middleware)

	// The legacy login.
	login := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	s, err := store.New(req, "session")
	if err != nil {
		return "", err
	}
	s.Values["user_id"] = subject
	s.Values["username"] = "alice"
	if err := s.Save(req, login); err != nil {
		return "", err
	}

	// The first call to a dual route converts the session.
	req = httptest.NewRequest(http.MethodGet, "/api/me", nil)
	for _, c := range login.Result().Cookies() {
		req.AddCookie(c)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	for _, c := range w.Result().Cookies() {
		if c.Name == bridge.DefaultCookieName && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", errors.New("the session was not converted")
}
