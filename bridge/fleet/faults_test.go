// Fault tests of the fleet on a single real redis-server: killed and
// restarted empty, paused (SIGSTOP: connections accepted, never
// answered), a blackhole listener in its place, and a graceful shutdown
// under load. The counter flush keeps its batch through the outage and
// never counts twice, Close gives up within FlushTimeout and accounts for
// what it lost, and the request path of a Bridge with a Fleet stays as it
// is without one (503 for sessions, JWTs with zero Redis calls while Run
// works in the background). The request path alone through the same
// faults is tested in bridge (faults_test.go). They measure time against
// deadlines, so they do not run in parallel. Each instance (ftNode)
// counts the Redis commands of the request path only
// (bridgetest.RequestCalls).
package fleet

import (
	"context"
	"net"
	"net/http"
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
// without Redis; the counter flush fails and keeps its batch. Once it is
// back, the sessions are gone (session_unknown: 401 on dual routes), JWT
// users — including one converted before the outage — are unaffected,
// and the counters flushed to the fresh server are exactly what was served
// since the last acknowledged flush: the pending batch re-applied (the
// empty server has no seq key, so applying it is right) and nothing
// counted twice.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	rdb := srv.Client()
	// No Run: flushes happen exactly where the test says.
	nd := ftNewNode(t, rdb, nil, Config{})
	sess, _ := bridgetest.SaveSession(t, nd.Store, bridgetest.User("1"))
	cr := bridgetest.NewFaultCreds(t, nd.Node, sess)
	convCreds := bridgetest.ConvertedCreds(t, nd.Node, cr)
	fl := nd.f.fl
	flush := func() error { // a killed server refuses at once
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return nd.f.Flush(ctx)
	}

	// Up: everything works; the flush is acknowledged.
	if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL("/dual"), nil, sess); r.StatusCode != http.StatusOK || r.Identity(t).Source != "session" {
		t.Fatalf("session before the outage: got %d %s, want 200 session", r.StatusCode, r.Body)
	}
	bridgetest.CheckJWTUnaffected(t, nd.Node, convCreds, "up")
	if err := flush(); err != nil {
		t.Fatalf("flush with Redis up: %v", err)
	}
	acked := ftSnapshotCounts(nd.B)
	ackedRequests := bridgetest.TotalRequests(nd.B)
	if got := nd.f.Stats().Flushed; got != ackedRequests {
		t.Fatalf("flushed %d, served %d", got, ackedRequests)
	}

	// Down.
	srv.Kill()
	bridgetest.CheckUnavailable(t, nd.Node, cr, "killed")
	bridgetest.CheckJWTUnaffected(t, nd.Node, convCreds, "killed")
	if err := flush(); err == nil {
		t.Fatal("flush with Redis killed: no error")
	}
	fl.mu.Lock()
	pending := fl.pending
	fl.mu.Unlock()
	if pending == nil || pending.total == 0 || nd.f.Stats().Pending != pending.total {
		t.Fatalf("no pending batch after the failed flush (pending %v, Stats().Pending %d)", pending, nd.f.Stats().Pending)
	}
	pendingSeq := pending.seq

	// Back, empty.
	srv.Restart()
	bridgetest.CheckRestartedEmpty(t, nd.Node, cr, convCreds)
	if err := flush(); err != nil {
		t.Fatalf("flush after the restart: %v", err)
	}
	fl.mu.Lock()
	pending, seq := fl.pending, fl.seq
	fl.mu.Unlock()
	if pending != nil {
		t.Fatal("batch still pending after a successful flush")
	}
	if seq != pendingSeq+1 {
		t.Errorf("sequence after the restart: got %d, want the pending batch %d then one new batch", seq, pendingSeq)
	}
	if got, err := rdb.Get(ctx, ftSeqKey(t, nd.f)).Uint64(); err != nil || got != seq {
		t.Errorf("seq key on the fresh server: got %d (%v), want %d", got, err, seq)
	}

	// The fresh server holds what was served since the acknowledged flush.
	since := ftCounts{}
	for k, v := range ftSnapshotCounts(nd.B) {
		if d := v - acked[k]; d > 0 {
			since[k] = d
		}
	}
	rep := ftReport(t, nd.f)
	ftCompareCounts(t, "fresh server's report vs served since the last acknowledged flush", ftReportCounts(rep), since)
	if got, want := nd.f.Stats().Flushed, bridgetest.TotalRequests(nd.B); got != want {
		t.Errorf("flushed %d requests in all, served %d", got, want)
	}
	// One more flush sends nothing twice.
	if err := flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	rep = ftReport(t, nd.f)
	ftCompareCounts(t, "report after one more flush", ftReportCounts(rep), since)
	t.Logf("served %d requests, %d acknowledged before the kill; the fresh server got the other %d",
		bridgetest.TotalRequests(nd.B), ackedRequests, bridgetest.TotalRequests(nd.B)-ackedRequests)
}

// TestFaultRedisHangs: Redis accepts connections and never answers — a
// paused (SIGSTOP) server, or a blackhole listener in its place. Session
// requests get 503 with Retry-After within the store's deadline; JWT
// requests get 200 with zero Redis calls; Run's flushes fail without
// affecting requests and keep the counts; logout clears the cookies and
// reports the store unavailable within its bound. The paused server, once
// resumed, still holds the session (nothing was deleted) and receives
// every count; with the blackhole, Close gives up within FlushTimeout and
// accounts for exactly what it could not flush.
func TestFaultRedisHangs(t *testing.T) {
	bridgetest.RunHangs(t, func(t *testing.T, srv *redistest.Server, rdb *redis.Client) {
		nd := ftNewNode(t, rdb, nil, Config{
			FlushInterval: 50 * time.Millisecond,
			FlushTimeout:  200 * time.Millisecond,
		})
		sess, sessKey := bridgetest.HangSession(t, nd.Node, srv != nil)
		cr := bridgetest.NewFaultCreds(t, nd.Node, sess)
		ftRun(t, nd.f)
		if srv != nil {
			resume := bridgetest.PauseAfterSession(t, nd.Node, srv, sess)
			errs := nd.f.Stats().Errors
			bridgetest.Eventually(t, 3*time.Second, "a flush to fail", func() bool { return nd.f.Stats().Errors > errs })
			bridgetest.HangChecks(t, nd.Node, cr, bridgetest.FaultBound+nd.f.Config().FlushTimeout)
			resume()
			bridgetest.CheckSessionKept(t, nd.Node, sess, sessKey)
			bridgetest.Eventually(t, 5*time.Second, "Run to flush the counts kept during the hang", func() bool {
				return nd.f.Stats().Flushed == bridgetest.TotalRequests(nd.B)
			})
			rep := ftReport(t, nd.f)
			ftCompareCounts(t, "report after the hang vs served", ftReportCounts(rep), ftSnapshotCounts(nd.B))
			return
		}
		bridgetest.Eventually(t, 3*time.Second, "a flush to fail", func() bool { return nd.f.Stats().Errors > 0 })
		bridgetest.HangChecks(t, nd.Node, cr, bridgetest.FaultBound+nd.f.Config().FlushTimeout)
		start := time.Now()
		err := nd.f.Close()
		if took := time.Since(start); err == nil || took > 200*time.Millisecond+2*time.Second {
			t.Errorf("Close against the blackhole: got %v in %v, want an error within FlushTimeout (200ms)", err, took)
		}
		if lost, served := nd.f.Stats().LostOnClose, bridgetest.TotalRequests(nd.B); lost != served || lost == 0 {
			t.Errorf("lost at Close: got %d, want every request served (%d)", lost, served)
		}
	})
}

// TestFaultGracefulShutdown: requests in flight while Close runs. The
// order is the documented one: the HTTP server stops accepting
// (http.Server.Shutdown) and Close runs while handlers are still running;
// their requests were counted before their handlers started, so the final
// flush includes them. With Redis up, the report equals the in-process
// counts exactly and nothing is lost; with Redis hung at shutdown, Close
// gives up within FlushTimeout and accounts for exactly what it could not
// flush.
//
// Close does not wait for requests still inside the middleware (before
// they are counted): the test waits until every request in the server is
// parked in its handler, i.e. counted, before it calls Close.
func TestFaultGracefulShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hungClose bool
	}{
		{"redis up", false},
		{"redis hung at close", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.New(t)
			rdb := redis.NewClient(bridgetest.FaultOptions(srv))
			t.Cleanup(func() { _ = rdb.Close() })
			nd := ftNewNode(t, rdb, nil, Config{
				// Run's ticker stays out of the way; the test flushes
				// half-way through the load in its place.
				FlushInterval: time.Hour,
				FlushTimeout:  300 * time.Millisecond,
			})
			sess, _ := bridgetest.SaveSession(t, nd.Store, bridgetest.User("1"))
			cr := bridgetest.NewFaultCreds(t, nd.Node, sess)
			forged := bridgetest.NewKey(t).Mint(t, nd.B, "x", nil)

			// The server: requests to /hold/{id} park in the handler until
			// release; entered/left count requests in the server.
			var inMu sync.Mutex
			inServer, inHandler := 0, 0
			release := make(chan struct{})
			router := bridgetest.NewRouter(nd.Store)
			router.HandleFunc("/hold/{id}", func(w http.ResponseWriter, r *http.Request) {
				inMu.Lock()
				inHandler++
				inMu.Unlock()
				<-release
				inMu.Lock()
				inHandler--
				inMu.Unlock()
				bridgetest.IdentityHandler(w, r)
			})
			router.Use(nd.B.Middleware)
			handler := bridgetest.MarkRequests(router)
			open := map[net.Conn]http.ConnState{} // connections not closed
			hs := &http.Server{ConnState: func(c net.Conn, st http.ConnState) {
				inMu.Lock()
				defer inMu.Unlock()
				if st == http.StateClosed || st == http.StateHijacked {
					delete(open, c)
				} else {
					open[c] = st
				}
			}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inMu.Lock()
				inServer++
				inMu.Unlock()
				defer func() {
					inMu.Lock()
					inServer--
					inMu.Unlock()
				}()
				handler.ServeHTTP(w, r)
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = hs.Serve(ln) }()
			base := "http://" + ln.Addr().String()
			client := &http.Client{Timeout: 10 * time.Second}
			runCtx, cancelRun := context.WithCancel(ctx)
			defer cancelRun()
			runDone := make(chan struct{})
			go func() {
				defer close(runDone)
				_ = nd.f.Run(runCtx)
			}()

			// Load: every kind of request, until the server shuts down.
			kinds := []func(*http.Request){
				func(r *http.Request) { r.AddCookie(cr.Session) },
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+cr.Bearer) },
				func(r *http.Request) { r.AddCookie(cr.JWTCookie) },
				func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+forged) },
				func(*http.Request) {},
			}
			paths := []string{"/dual", "/legacy", "/jwt", "/dual/7"}
			stop := make(chan struct{})
			var load sync.WaitGroup
			for w := range 8 {
				load.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						bridgetest.TryGet(client, base+paths[(i+w)%len(paths)], kinds[(i/len(paths)+w)%len(kinds)])
					}
				})
			}
			const held = 4
			var holders sync.WaitGroup
			for i := range held {
				holders.Go(func() {
					r := bridgetest.TryGet(client, base+"/hold/"+strconv.Itoa(i), kinds[i%3])
					if r.Err != nil || r.Status != http.StatusOK {
						t.Errorf("held request %d: got %d %v, want 200", i, r.Status, r.Err)
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			if err := nd.f.Flush(ctx); err != nil {
				t.Fatalf("Flush under load: %v", err)
			}
			time.Sleep(300 * time.Millisecond)
			bridgetest.Eventually(t, 2*time.Second, "the held requests in their handlers", func() bool {
				inMu.Lock()
				defer inMu.Unlock()
				return inHandler == held
			})

			// Shutdown: stop accepting, drain.
			shutdownDone := make(chan error, 1)
			go func() { shutdownDone <- hs.Shutdown(context.Background()) }()
			// Shutdown closes the listener and, as they fall idle, the
			// other connections: once only the held requests' are left,
			// no request can enter the middleware any more, and every
			// request in the server is counted (parked in its handler).
			bridgetest.Eventually(t, 3*time.Second, "only the held requests left in the server", func() bool {
				inMu.Lock()
				defer inMu.Unlock()
				for _, st := range open {
					if st != http.StateActive {
						return false
					}
				}
				return len(open) == held && inServer == held && inHandler == held
			})
			close(stop)
			unflushed := bridgetest.TotalRequests(nd.B) - nd.f.Stats().Flushed
			if tc.hungClose {
				srv.Pause()
				defer srv.Resume()
			}
			start := time.Now()
			err = nd.f.Close() // handlers still in flight
			took := time.Since(start)
			close(release)
			holders.Wait()
			load.Wait()
			if err := <-shutdownDone; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			select {
			case <-runDone:
			case <-time.After(time.Second):
				t.Error("Run did not return after Close")
			}
			served := bridgetest.TotalRequests(nd.B)
			st := nd.f.Stats()
			t.Logf("served %d requests; %d not yet flushed when Close began; Close took %v", served, unflushed, took.Round(time.Millisecond))
			if unflushed == 0 {
				t.Error("nothing left for the final flush: the test did not exercise it")
			}
			if tc.hungClose {
				srv.Resume()
				if flushTimeout := nd.f.Config().FlushTimeout; err == nil || took > flushTimeout+2*time.Second {
					t.Errorf("Close with Redis hung: got %v in %v, want an error within FlushTimeout %v", err, took, flushTimeout)
				}
				if st.LostOnClose != served-st.Flushed || st.LostOnClose != unflushed {
					t.Errorf("lost at Close: got %d, want served %d − flushed %d = %d", st.LostOnClose, served, st.Flushed, unflushed)
				}
				// The final batch was written to the hung server before
				// Close gave up: resumed, Redis may run it. Either way it
				// is applied at most once (it is never re-sent), so the
				// report holds what was acknowledged, or that plus the
				// unacknowledged batch; LostOnClose is the upper bound.
				reported := func() uint64 {
					rep := ftReport(t, nd.f)
					var n uint64
					for _, r := range rep.Routes {
						n += r.Counts.Total()
					}
					return n
				}
				acked, lost := st.Flushed, st.LostOnClose
				var got uint64
				deadline := time.Now().Add(time.Second)
				for got = reported(); got != acked+lost && time.Now().Before(deadline); got = reported() {
					time.Sleep(20 * time.Millisecond)
				}
				if got != acked && got != acked+lost {
					t.Errorf("report holds %d requests, want the %d acknowledged, or those and the unacknowledged final batch (%d)", got, acked, acked+lost)
				}
				t.Logf("after resume the report holds %d requests: %d acknowledged + %d of the %d Close reported as lost",
					got, acked, got-acked, lost)
				return
			}
			if err != nil {
				t.Fatalf("Close with Redis up: %v", err)
			}
			if st.LostOnClose != 0 {
				t.Errorf("lost at Close: got %d, want 0", st.LostOnClose)
			}
			if st.Flushed != served {
				t.Errorf("flushed %d, served %d", st.Flushed, served)
			}
			rep := ftReport(t, nd.f)
			ftCompareCounts(t, "report after Close vs in-process counts", ftReportCounts(rep), ftSnapshotCounts(nd.B))
		})
	}
}
