// Fault tests of the request path on a single real redis-server: killed
// and restarted empty, paused (SIGSTOP: connections accepted, never
// answered), a blackhole listener in its place, an exhausted connection
// pool. The bridges here have no Fleet: what the counter flush and Close
// do through the same faults is tested in bridge/fleet (faults_test.go).
// They measure time against deadlines, so they do not run in parallel.
// Each instance (bridgetest.Node) counts the Redis commands of the
// request path only (bridgetest.RequestCalls), so that "zero Redis calls"
// means the request path's.
package bridge_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// TestFaultRedisRestartedEmpty: Redis is killed, then restarted empty.
// While it is down, session requests get 503 and JWT users are served
// without Redis. Once it is back, the sessions are gone (session_unknown:
// 401 on dual routes), and JWT users — including one converted before
// the outage — are unaffected. The counter flush through the same outage
// is fleet's TestFaultRedisRestartedEmpty.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	srv := redistest.New(t)
	nd := bridgetest.NewNode(t, srv.Client(), nil)
	sess, _ := bridgetest.SaveSession(t, nd.Store, bridgetest.User("1"))
	cr := bridgetest.NewFaultCreds(t, nd, sess)
	convCreds := bridgetest.ConvertedCreds(t, nd, cr)

	// Up: everything works.
	if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
		t.Fatalf("session before the outage: got %d %s, want 200 session", r.StatusCode, r.Body)
	}
	bridgetest.CheckJWTUnaffected(t, nd, convCreds, "up")

	// Down.
	srv.Kill()
	bridgetest.CheckUnavailable(t, nd, cr, "killed")
	bridgetest.CheckJWTUnaffected(t, nd, convCreds, "killed")

	// Back, empty.
	srv.Restart()
	bridgetest.CheckRestartedEmpty(t, nd, cr, convCreds)
}

// TestFaultRedisHangs: Redis accepts connections and never answers — a
// paused (SIGSTOP) server, or a blackhole listener in its place. Session
// requests get 503 with Retry-After within the store's deadline; JWT
// requests get 200 with zero Redis calls; logout clears the cookies and
// reports the store unavailable within its bound. The paused server, once
// resumed, still holds the session (nothing was deleted) and serves it
// again. The flush and Close through the same hang are fleet's
// TestFaultRedisHangs.
func TestFaultRedisHangs(t *testing.T) {
	bridgetest.RunHangs(t, func(t *testing.T, srv *redistest.Server, rdb *redis.Client) {
		nd := bridgetest.NewNode(t, rdb, nil)
		sess, sessKey := bridgetest.HangSession(t, nd, srv != nil)
		cr := bridgetest.NewFaultCreds(t, nd, sess)
		if srv == nil {
			bridgetest.HangChecks(t, nd, cr, bridgetest.FaultBound)
			return
		}
		resume := bridgetest.PauseAfterSession(t, nd, srv, sess)
		bridgetest.HangChecks(t, nd, cr, bridgetest.FaultBound)
		resume()
		bridgetest.CheckSessionKept(t, nd, sess, sessKey)
	})
}

// TestFaultPoolExhaustion: a client with a pool of two connections and a
// short PoolTimeout, 50 concurrent session requests: each is answered 200
// (authenticated by the session) or 503 within the deadline — never 401,
// never a hang — and the pool serves again once Redis does.
func TestFaultPoolExhaustion(t *testing.T) {
	tests := []struct {
		name   string
		pause  bool
		want   func(ok, unavailable int) bool
		wantIs string
	}{
		{"redis up", false, func(ok, _ int) bool { return ok > 0 }, "some 200"},
		{"redis paused", true, func(ok, _ int) bool { return ok == 0 }, "every request 503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.New(t)
			opts := bridgetest.FaultOptions(srv)
			opts.PoolSize = 2
			opts.PoolTimeout = 100 * time.Millisecond
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			nd := bridgetest.NewNode(t, rdb, nil)
			const nSessions, concurrent = 10, 50
			var cookies []*http.Cookie
			for i := range nSessions {
				c, _ := bridgetest.SaveSession(t, nd.Store, bridgetest.User(strconv.Itoa(i)))
				cookies = append(cookies, c)
			}
			// Server-side durations, measured around the whole handler.
			var mu sync.Mutex
			var durs []time.Duration
			inner := nd.TS.Config.Handler
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				start := time.Now()
				inner.ServeHTTP(w, r)
				mu.Lock()
				durs = append(durs, time.Since(start))
				mu.Unlock()
			}))
			t.Cleanup(ts.Close)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: concurrent}}
			t.Cleanup(client.CloseIdleConnections)
			// Connections first, so that the burst is of requests.
			var warm sync.WaitGroup
			for range concurrent {
				warm.Go(func() { bridgetest.TryGet(client, ts.URL+"/healthz", func(*http.Request) {}) })
			}
			warm.Wait()
			if tc.pause {
				srv.Pause()
				defer srv.Resume()
			}
			timeoutsBefore := rdb.PoolStats().Timeouts
			gate := make(chan struct{})
			results := make([]bridgetest.Attempt, concurrent)
			var wg sync.WaitGroup
			for i := range concurrent {
				wg.Go(func() {
					<-gate
					results[i] = bridgetest.TryGet(client, ts.URL+"/dual", func(r *http.Request) { r.AddCookie(cookies[i%nSessions]) })
				})
			}
			start := time.Now()
			close(gate)
			wg.Wait()
			burst := time.Since(start)
			var ok, unavailable int
			for i, r := range results {
				switch {
				case r.Err != nil:
					t.Errorf("request %d: %v", i, r.Err)
				case r.Status == http.StatusOK && r.Source == "session":
					ok++
				case r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "":
					unavailable++
				default:
					t.Errorf("request %d: got %d source %q reason %q, want 200 session or 503 with Retry-After", i, r.Status, r.Source, r.Reason)
				}
			}
			mu.Lock()
			var slowest time.Duration
			for _, d := range durs {
				slowest = max(slowest, d)
			}
			mu.Unlock()
			if slowest > bridgetest.FaultBound {
				t.Errorf("slowest request took %v in the server, want within %v", slowest, bridgetest.FaultBound)
			}
			if !tc.want(ok, unavailable) {
				t.Errorf("%d × 200, %d × 503: want %s", ok, unavailable, tc.wantIs)
			}
			poolTimeouts := rdb.PoolStats().Timeouts - timeoutsBefore
			if tc.pause && poolTimeouts == 0 {
				t.Error("no pool timeout: the pool was not exhausted")
			}
			t.Logf("%d × 200, %d × 503, %d pool timeouts; burst answered in %v, slowest in the server %v",
				ok, unavailable, poolTimeouts, burst.Round(time.Millisecond), slowest.Round(time.Millisecond))
			if tc.pause {
				srv.Resume()
				// The connections that timed out were discarded: the pool
				// serves again.
				for i := range 5 {
					if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, cookies[i]); r.StatusCode != http.StatusOK {
						t.Errorf("session after resume: got %d %s, want 200", r.StatusCode, r.Body)
					}
				}
			}
		})
	}
}
