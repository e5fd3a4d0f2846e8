// Command legacyapp runs the legacy demo monolith: gorilla/mux routes,
// gorilla/sessions sessions in Redis, HTML pages and a JSON API.
//
// Environment:
//
//	ADDR              listen address (default 127.0.0.1:8080)
//	REDIS_URL         redis://, rediss://, redis+cluster:// or redis+sentinel:// URL (default: an embedded in-memory Redis)
//	SESSION_HASH_KEY  securecookie hash key, the string's raw bytes, at least 32 (default: a development key)
//	LOG_LEVEL         debug, info, warn or error (default info)
//	BRIDGE=off        run exactly as before the bridge (the baseline)
//	APP_MIGRATED_PAGES=1  the HTML pages read the caller like the API and keep carts by user
//	BRIDGE_*          the bridge's settings: see docs/demo.md
//
// SIGINT and SIGTERM shut the server down gracefully.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redisurl"
	"github.com/sessionbridge/sessionbridge/legacyapp"
)

const (
	defaultAddr     = "127.0.0.1:8080"
	exampleRedisURL = "redis://127.0.0.1:6379/0"
	// devHashKey signs session cookies when SESSION_HASH_KEY is unset.
	// It is public: anyone can forge cookies signed with it.
	devHashKey      = "sessionbridge-legacyapp-development-hash-key-not-secret"
	minHashKeyLen   = 32
	sessionMaxAge   = 7 * 24 * 60 * 60 // seconds
	redisTimeout    = 500 * time.Millisecond
	redisMaxRetries = 2
	shutdownTimeout = 10 * time.Second
	// demoCredentials are the documented demo accounts of legacyapp.DemoUsers.
	demoCredentials = "alice / alice-password (roles: user), bob / bob-password (roles: user, admin)"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "legacyapp:", err)
		os.Exit(1)
	}
}

// run serves the app until ctx is cancelled, then shuts it down gracefully.
// It reads its configuration through getenv and logs to stdout.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	level, err := logLevel(getenv("LOG_LEVEL"))
	if err != nil {
		return err
	}
	logHandler := slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: level})
	logger := slog.New(logHandler)

	hashKey, err := sessionHashKey(getenv("SESSION_HASH_KEY"), logger)
	if err != nil {
		return err
	}
	rdb, closeRedis, err := redisClient(getenv("REDIS_URL"), logger)
	if err != nil {
		return err
	}
	defer closeRedis()
	pingRedis(ctx, rdb, logger)

	store, err := redisstore.New(redisstore.Config{
		Client:   rdb,
		KeyPairs: [][]byte{hashKey},
		Options:  sessionOptions(),
		Timeout:  redisTimeout,
	})
	if err != nil {
		return err
	}
	addr := cmp.Or(getenv("ADDR"), defaultAddr)
	appCfg := legacyapp.Config{Store: store, SessionName: legacyapp.DefaultSessionName, Logger: logger}
	switch s := getenv("APP_MIGRATED_PAGES"); s {
	case "", "0", "false":
	case "1", "true":
		// The HTML pages read the caller like the API does, and carts live
		// by user in Redis: the monolith after its handler migration.
		appCfg.Carts = legacyapp.RedisCarts(rdb)
	default:
		return fmt.Errorf("APP_MIGRATED_PAGES %q: want 1 or unset", s)
	}
	var handler http.Handler
	if getenv("BRIDGE") == "off" {
		logger.Info("BRIDGE=off: the monolith runs exactly as before the bridge")
		app, err := legacyapp.New(appCfg)
		if err != nil {
			return err
		}
		handler = app.Router()
	} else {
		d, err := bridgeConfig(getenv, addr, hashKey, logger)
		if err != nil {
			return err
		}
		if getenv("REDIS_URL") == "" {
			// The embedded Redis has no keyspace notifications: a session
			// ends its tokens through the app's logout only (b.Logout).
			d.fleet.SessionKeyPrefix = fleet.NoSessionEvents
		}
		b, f, r, err := withBridge(d, rdb, store, legacyapp.New, appCfg)
		if err != nil {
			return err
		}
		// Deferred: runs after srv.Shutdown, so that the final flush
		// counts every request served.
		defer f.Close()
		go func() { _ = b.Run(ctx) }()
		go func() { _ = f.Run(ctx) }()
		handler = r
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logHandler, slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	logger.Info("legacyapp listening", "url", "http://"+browsable(ln.Addr())+"/login")
	logger.Info("demo users", "users", demoCredentials)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// sessionOptions are the cookie options of the legacy session.
func sessionOptions() *sessions.Options {
	return &sessions.Options{
		Path:     "/",
		MaxAge:   sessionMaxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		// Secure is off so that the local demo works on plain
		// http://127.0.0.1, where browsers would drop a Secure cookie
		// set over http. Behind TLS in production it must be on; a later
		// flag will govern it.
		Secure: false,
	}
}

func logLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", s)
}

// sessionHashKey returns the raw bytes of SESSION_HASH_KEY, or the public
// development key with a warning when it is unset. The key is never logged.
func sessionHashKey(s string, logger *slog.Logger) ([]byte, error) {
	if s == "" {
		logger.Warn("SESSION_HASH_KEY is not set: session cookies are signed with a PUBLIC DEVELOPMENT KEY that anyone can forge; set SESSION_HASH_KEY to a random string of at least 32 bytes for anything but a local demo")
		return []byte(devHashKey), nil
	}
	if len(s) < minHashKeyLen {
		return nil, fmt.Errorf("SESSION_HASH_KEY has %d bytes, want at least %d", len(s), minHashKeyLen)
	}
	return []byte(s), nil
}

// redisClient returns a client for REDIS_URL (one server, or the
// redis+cluster:// and redis+sentinel:// forms of internal/redisurl), or for
// an embedded in-memory Redis when it is unset, and a function that closes
// both.
func redisClient(rawURL string, logger *slog.Logger) (redis.UniversalClient, func(), error) {
	if rawURL != "" {
		rdb, kind, err := redisurl.New(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		logger.Info("using redis", "topology", string(kind))
		return rdb, func() { _ = rdb.Close() }, nil
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("embedded redis: %w", err)
	}
	logger.Warn("REDIS_URL is not set: using an embedded in-memory Redis; sessions are lost when the process stops. To use a real server, set REDIS_URL, e.g. REDIS_URL="+exampleRedisURL, "addr", m.Addr())
	rdb := redis.NewClient(&redis.Options{
		Addr:                  m.Addr(),
		ContextTimeoutEnabled: true,
		DialTimeout:           redisTimeout,
		ReadTimeout:           redisTimeout,
		WriteTimeout:          redisTimeout,
		MaxRetries:            redisMaxRetries,
	})
	return rdb, func() {
		_ = rdb.Close()
		m.Close()
	}, nil
}

// pingRedis warns when Redis does not answer at start-up. The app starts
// anyway: requests that need a session answer 503 until Redis is back.
func pingRedis(ctx context.Context, rdb redis.UniversalClient, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*redisTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		logger.Warn("redis does not answer; requests that need a session will answer 503 until it does", "err", err)
	}
}

// browsable returns addr as a host:port a browser can open.
func browsable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
