package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/boj/redistore"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

const (
	sessionName = "session"
	legacyPath  = "/legacy"
	dualPath    = "/dual"
)

// The legacy app's securecookie key pair (hash, block).
var keyPairs = [][]byte{
	[]byte("0123456789abcdef0123456789abcdef"),
	[]byte("fedcba9876543210fedcba9876543210"),
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopRedis()
	os.Exit(code)
}

var (
	redisOnce sync.Once
	redisAddr string
	redisCmd  *exec.Cmd
	redisErr  error
)

// redisServer returns the address of a redis-server: REDIS_URL's, or one
// started once for the process on a free loopback port, persistence off.
func redisServer(b *testing.B) string {
	b.Helper()
	redisOnce.Do(func() {
		if u := os.Getenv("REDIS_URL"); u != "" {
			opt, err := redis.ParseURL(u)
			if err != nil {
				redisErr = fmt.Errorf("REDIS_URL: %w", err)
				return
			}
			redisAddr = opt.Addr
			return
		}
		if _, err := exec.LookPath("redis-server"); err != nil {
			redisErr = errors.New("redis-server not found: apt-get install redis-server (make deps), or set REDIS_URL")
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			redisErr = err
			return
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		redisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		redisCmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		if err := redisCmd.Start(); err != nil {
			redisErr = err
			return
		}
		redisErr = waitRedis(redisAddr, 5*time.Second)
	})
	if redisErr != nil {
		b.Fatalf("redis: %v", redisErr)
	}
	return redisAddr
}

func waitRedis(addr string, d time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(d)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stopRedis() {
	if redisCmd != nil && redisCmd.Process != nil {
		_ = redisCmd.Process.Kill()
		_ = redisCmd.Wait()
	}
}

// sessionFixture is a live session saved by boj/redistore, readable by
// every store here (they share its format), and the stores.
type sessionFixture struct {
	rdb      *redis.Client
	boj      *redistore.RediStore // NewRediStore: its pool PINGs on every borrow
	boj1RTT  *redistore.RediStore // the same without TestOnBorrow: one round trip
	appStore *redisstore.Store    // the app's store (bridge/redisstore, go-redis)
	cookie   *http.Cookie
}

func newSessionFixture(b *testing.B) *sessionFixture {
	b.Helper()
	addr := redisServer(b)
	f := &sessionFixture{rdb: redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})}
	b.Cleanup(func() { _ = f.rdb.Close() })
	var err error
	if f.boj, err = redistore.NewRediStore(10, "tcp", addr, "", "", keyPairs...); err != nil {
		b.Fatalf("boj: %v", err)
	}
	b.Cleanup(func() { _ = f.boj.Close() })
	pool := &redigo.Pool{MaxIdle: 10, IdleTimeout: 240 * time.Second, Dial: func() (redigo.Conn, error) { return redigo.Dial("tcp", addr) }}
	if f.boj1RTT, err = redistore.NewRediStoreWithPool(pool, keyPairs...); err != nil {
		b.Fatalf("boj (pool): %v", err)
	}
	b.Cleanup(func() { _ = f.boj1RTT.Close() })
	if f.appStore, err = redisstore.New(redisstore.Config{Client: f.rdb, KeyPairs: keyPairs}); err != nil {
		b.Fatalf("redisstore: %v", err)
	}

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	s, err := f.boj.New(r, sessionName)
	if err != nil {
		b.Fatalf("boj new: %v", err)
	}
	s.Values["user_id"] = "42"
	s.Values["username"] = "user42"
	s.Values["roles"] = []string{"user", "admin"}
	if err := s.Save(r, w); err != nil {
		b.Fatalf("boj save: %v", err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionName {
			f.cookie = c
		}
	}
	if f.cookie == nil {
		b.Fatal("boj save set no cookie")
	}
	return f
}

func (f *sessionFixture) request(path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://app.bench.test"+path, nil)
	r.AddCookie(&http.Cookie{Name: f.cookie.Name, Value: f.cookie.Value})
	return r
}

func (f *sessionFixture) bojSource(b *testing.B) bridge.SessionSource {
	src, err := redisstore.BojSource(f.rdb, sessionName, keyPairs...)
	if err != nil {
		b.Fatalf("BojSource: %v", err)
	}
	return src
}

// loadBench benchmarks load on a fresh copy of the request each time:
// gorilla's registry caches the session in the request it is given.
func loadBench(b *testing.B, tmpl *http.Request, load func(r *http.Request) error) {
	b.Helper()
	r := new(http.Request)
	*r = *tmpl
	if err := load(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		r := new(http.Request)
		*r = *tmpl
		if err := load(r); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

func storeGet(store sessions.Store) func(*http.Request) error {
	return func(r *http.Request) error {
		s, err := store.Get(r, sessionName)
		if err != nil {
			return err
		}
		if s.IsNew || s.Values["user_id"] != "42" {
			return errors.New("session not found")
		}
		return nil
	}
}

func sourceLoad(src bridge.SessionSource) func(*http.Request) error {
	return func(r *http.Request) error {
		s, err := src.Load(r)
		if err != nil {
			return err
		}
		if s.Values["user_id"] != "42" {
			return errors.New("session not found")
		}
		return nil
	}
}

// BenchmarkSession reads the legacy session from a real redis-server.
//
// path=load is the read alone on a fresh request: gorilla/sessions with
// boj/redistore (Get, as built by NewRediStore, whose pool PINGs on every
// borrow: two round trips; and boj-redistore-1rtt, a pool without that
// test: one), the app's store (bridge/redisstore) Get, and the bridge's
// sources: StoreSource over the app's store, and BojSource reading Redis
// directly (GET and PTTL pipelined: one round trip, and the TTL).
//
// path=router is a whole request on a mux router: the bare handler; a
// legacy handler calling boj's Get; the bridge's middleware on a legacy
// route with each source (the session is read, counted and put in the
// request's identity; the handler is bare).
func BenchmarkSession(b *testing.B) {
	b.Run("path=load/impl=boj-redistore", func(b *testing.B) {
		f := newSessionFixture(b)
		loadBench(b, f.request("/"), storeGet(f.boj))
	})
	b.Run("path=load/impl=boj-redistore-1rtt", func(b *testing.B) {
		f := newSessionFixture(b)
		loadBench(b, f.request("/"), storeGet(f.boj1RTT))
	})
	b.Run("path=load/impl=redisstore", func(b *testing.B) {
		f := newSessionFixture(b)
		loadBench(b, f.request("/"), storeGet(f.appStore))
	})
	b.Run("path=load/impl=sessionbridge-store", func(b *testing.B) {
		f := newSessionFixture(b)
		loadBench(b, f.request("/"), sourceLoad(bridge.StoreSource(f.appStore, sessionName)))
	})
	b.Run("path=load/impl=sessionbridge-redis", func(b *testing.B) {
		f := newSessionFixture(b)
		loadBench(b, f.request("/"), sourceLoad(f.bojSource(b)))
	})

	b.Run("path=router/impl=bare-handler", func(b *testing.B) {
		f := newSessionFixture(b)
		serve(b, newRouter(legacyPath), f.request(legacyPath), true)
	})
	b.Run("path=router/impl=boj-redistore", func(b *testing.B) {
		f := newSessionFixture(b)
		r := mux.NewRouter()
		get := storeGet(f.boj)
		r.HandleFunc(legacyPath, func(w http.ResponseWriter, r *http.Request) {
			if err := get(r); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			served++
		})
		serve(b, r, f.request(legacyPath), true)
	})
	for _, src := range []string{"store", "redis"} {
		b.Run("path=router/impl=sessionbridge-"+src, func(b *testing.B) {
			f := newSessionFixture(b)
			source := bridge.StoreSource(f.appStore, sessionName)
			if src == "redis" {
				source = f.bojSource(b)
			}
			r := mux.NewRouter()
			r.HandleFunc(legacyPath, func(w http.ResponseWriter, r *http.Request) {
				if id, ok := bridge.IdentityFrom(r.Context()); ok && id.Subject() == "42" {
					served++
				}
			})
			br := newBridge(b, fixture(b, "ES256"), r, bridge.Routes{legacyPath: bridge.Legacy},
				func(c *bridge.Config) { c.Sessions = source })
			r.Use(br.Middleware)
			serve(b, r, f.request(legacyPath), true)
		})
	}
}

// BenchmarkConvert is a session-only request on a dual route: the bridge
// reads the session (the app's store), mints a token and sets the JWT
// cookie, on every request (the browser would send the cookie back). ES256
// only, the default key: the in-package BenchmarkConvert has every
// algorithm's mint and cookie alone.
func BenchmarkConvert(b *testing.B) {
	for _, alg := range []string{"ES256"} {
		b.Run("alg="+alg+"/impl=sessionbridge", func(b *testing.B) {
			f := newSessionFixture(b)
			r := mux.NewRouter()
			r.HandleFunc(dualPath, func(w http.ResponseWriter, r *http.Request) {
				if id, ok := bridge.IdentityFrom(r.Context()); ok && id.Token() != "" {
					served++
				}
			})
			br := newBridge(b, fixture(b, alg), r, bridge.Routes{dualPath: bridge.Dual},
				func(c *bridge.Config) { c.Sessions = bridge.StoreSource(f.appStore, sessionName) })
			r.Use(br.Middleware)
			req := f.request(dualPath)
			w := newWriter()
			before := served
			r.ServeHTTP(w, req)
			if served != before+1 || len(w.h["Set-Cookie"]) == 0 {
				b.Fatalf("not converted: status %d, headers %v", w.status(), w.h)
			}
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				w.reset()
				r.ServeHTTP(w, req)
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkCount is an anonymous request on a legacy route: the bridge
// only finds the route and counts the request.
func BenchmarkCount(b *testing.B) {
	req := request(legacyPath, "", "", "")
	b.Run("impl=bare-handler", func(b *testing.B) {
		serve(b, newRouter(legacyPath), req, true)
	})
	b.Run("impl=sessionbridge", func(b *testing.B) {
		r := newRouter(legacyPath)
		br := newBridge(b, fixture(b, "ES256"), r, bridge.Routes{legacyPath: bridge.Legacy}, nil)
		r.Use(br.Middleware)
		serve(b, r, req, true)
	})
}
