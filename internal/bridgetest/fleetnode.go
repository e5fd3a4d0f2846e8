package bridgetest

// An instance on a real Redis (Node), as the fault tests of the request
// path (bridge's faults_test.go, without a Fleet) and the fleet's fault
// and topology tests (with one) build it: it counts the Redis commands of
// its request path only, so that "zero Redis calls" means the request
// path's, whatever a Fleet does in the background. With it, the plumbing
// of tests that wait and call from goroutines.

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// Node is one instance: a Bridge with a redisstore.Store on RDB, the
// router of NewRouter behind a plain httptest server, and a counter of
// the Redis commands sent on the request path (Calls).
type Node struct {
	B     *bridge.Bridge
	Key   *Key // B's signing key, nil if mod set another
	Store *redisstore.Store
	RDB   redis.UniversalClient
	TS    *httptest.Server
	C     *http.Client // no cookie jar, no redirects
	Calls *RequestCalls
	Logs  *syncbuf.Buffer // the Bridge's logs (and its Fleet's)
}

// NewNode builds an instance on rdb; Sessions is StoreSource(Store) and
// Routes is Routes unless mod (which may also set a Fleet and a signing
// key) changes them. The handler of /legacy/app reads the session through
// B.WrapStore(Store), as an app that wrapped its store does.
func NewNode(t testing.TB, rdb redis.UniversalClient, mod func(*bridge.Config)) *Node {
	t.Helper()
	nd := &Node{RDB: rdb, Calls: new(RequestCalls)}
	rdb.AddHook(nd.Calls)
	nd.Store = NewStore(t, rdb, nil)
	handlers := &laterStore{Store: nd.Store}
	router := NewRouter(handlers)
	nd.B, nd.Key, nd.Logs = NewBridge(t, func(c *bridge.Config) {
		c.Sessions = bridge.StoreSource(nd.Store, SessionName)
		c.Routes = Routes
		c.Router = router
		if mod != nil {
			mod(c)
		}
	})
	router.Use(nd.B.Middleware)
	handlers.Store = nd.B.WrapStore(nd.Store)
	nd.TS = httptest.NewServer(MarkRequests(router))
	t.Cleanup(nd.TS.Close)
	nd.C = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nd
}

// laterStore is the store the router's handlers use, set once the
// Bridge that wraps it exists (before the server starts).
type laterStore struct{ sessions.Store }

// URL returns the test server's URL for path.
func (nd *Node) URL(path string) string { return nd.TS.URL + path }

// requestKey marks the context of requests served by a test server, so
// that RequestCalls counts the Redis commands of the request path only
// (not those of a Fleet's flushes, mode refreshes and revocation
// reads).
type requestKey struct{}

// MarkRequests marks the context of the requests h serves as the request
// path's, for RequestCalls.
func MarkRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, true)))
	})
}

// RequestCalls is a go-redis hook counting the commands (and dials) made
// with the context of a request marked by MarkRequests.
type RequestCalls struct{ n atomic.Int64 }

// N is the number of commands and dials counted so far.
func (h *RequestCalls) N() int64 { return h.n.Load() }

// DialHook counts a request's dials.
func (h *RequestCalls) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ctx.Value(requestKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, network, addr)
	}
}

// ProcessHook counts a request's commands.
func (h *RequestCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(requestKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts a request's pipelined commands.
func (h *RequestCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(requestKey{}) != nil {
			h.n.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// SessionCookie is a valid legacy cookie (KeyPairs) naming id, whether or
// not a session with that ID exists.
func SessionCookie(t testing.TB, id string) *http.Cookie {
	t.Helper()
	v, err := securecookie.EncodeMulti(SessionName, id, securecookie.CodecsFromPairs(KeyPairs()...)...)
	if err != nil {
		t.Fatalf("encode cookie: %v", err)
	}
	return &http.Cookie{Name: SessionName, Value: v}
}

// Attempt is an answer read without failing the test (for goroutines).
type Attempt struct {
	Status int
	Header http.Header
	Reason string // WriteError's reason
	Source string // IdentityHandler's source
	Dur    time.Duration
	Err    error
}

// TryGet sends a GET to url, prepared by prep.
func TryGet(c *http.Client, url string, prep func(*http.Request)) Attempt {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return Attempt{Err: err}
	}
	prep(req)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return Attempt{Err: err, Dur: time.Since(start)}
	}
	defer resp.Body.Close()
	var body struct{ Reason, Source string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return Attempt{Status: resp.StatusCode, Header: resp.Header, Reason: body.Reason, Source: body.Source, Dur: time.Since(start)}
}

// Eventually polls cond every 10ms until it holds, failing the test after
// d; it returns how long it took.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Within returns what fn returns with a context that ends after 5s,
// failing the test on an error (what names the call).
func Within[T any](t testing.TB, what string, fn func(context.Context) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := fn(ctx)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}
