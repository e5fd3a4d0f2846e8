package bridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// Fleet tests: several Bridge instances flushing their counters into one
// real redis-server, with Redis paused, replies lost and flushes re-sent,
// and the fleet report compared with what was served, exactly.

// flKind is the credential a fleet test request carries.
type flKind int

const (
	flAnon      flKind = iota // nothing
	flBearer                  // a valid bearer token
	flCookie                  // a valid JWT cookie
	flSession                 // a legacy session cookie (gorilla CookieStore)
	flBadBearer               // a bearer token signed by an unknown key
	numFlKinds
)

func (k flKind) String() string {
	return [...]string{"anonymous", "bearer", "jwt_cookie", "session", "bad_bearer"}[k]
}

// flExpect is how the counting rules count a request of kind k on a route
// in mode m: its source, the reason counted (if any), whether the session
// is converted, and the status answered.
func flExpect(m Mode, k flKind) (src Source, reason Reason, hasReason, converted bool, status int) {
	switch k {
	case flBearer:
		return SourceJWTBearer, 0, false, false, http.StatusOK
	case flCookie:
		return SourceJWTCookie, 0, false, false, http.StatusOK
	case flBadBearer:
		if m == Legacy {
			return SourceRejected, ReasonBearerInvalid, true, false, http.StatusOK
		}
		return SourceRejected, ReasonBearerInvalid, true, false, http.StatusUnauthorized
	case flSession:
		switch m {
		case Legacy:
			return SourceSession, 0, false, false, http.StatusOK
		case Dual:
			return SourceSession, 0, false, true, http.StatusOK
		default:
			return SourceRejected, ReasonSessionOnJWT, true, false, http.StatusUnauthorized
		}
	default:
		if m == Legacy {
			return SourceAnonymous, 0, false, false, http.StatusOK
		}
		return SourceAnonymous, ReasonNoCredentials, true, false, http.StatusUnauthorized
	}
}

// flPath is a concrete path of a test route template.
func flPath(route string) string { return strings.ReplaceAll(route, "{id}", "42") }

// flRoutes are testRoutes' templates, sorted.
func flRoutes() []string {
	var out []string
	for r := range testRoutes {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// flCreds are the credentials fleet test requests carry; every instance
// shares the signing key and the session store's keys.
type flCreds struct {
	bearer   []string
	cookie   []string
	sessions []*http.Cookie
	bad      string
}

func newFlCreds(t testing.TB, key *Key, store sessions.Store, nSessions int) *flCreds {
	t.Helper()
	c := &flCreds{}
	tok := func(k *Key, sub string) string {
		now := time.Now()
		s, err := mint(k, &Claims{RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    testIssuer,
			Audience:  jwt.ClaimStrings{testAudience},
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}})
		if err != nil {
			t.Fatalf("mint: %v", err)
		}
		return s
	}
	for i := range 3 {
		c.bearer = append(c.bearer, tok(key, fmt.Sprint("bearer-", i)))
		c.cookie = append(c.cookie, tok(key, fmt.Sprint("cookie-", i)))
	}
	c.bad = tok(newTestKey(t), "forger")
	for i := range nSessions {
		ck, _ := saveSession(t, store, testUser(fmt.Sprint(100+i)))
		c.sessions = append(c.sessions, ck)
	}
	return c
}

// flServe sends one GET of kind k to path through h and returns the
// recorder.
func flServe(h http.Handler, path string, k flKind, c *flCreds, i int) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
	switch k {
	case flBearer:
		r.Header.Set("Authorization", "Bearer "+c.bearer[i%len(c.bearer)])
	case flCookie:
		r.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: c.cookie[i%len(c.cookie)]})
	case flSession:
		r.AddCookie(c.sessions[i%len(c.sessions)])
	case flBadBearer:
		r.Header.Set("Authorization", "Bearer "+c.bad)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// flTally counts what was served, per route and kind.
type flTally struct {
	mu sync.Mutex
	n  map[string]*[numFlKinds]uint64
}

func newFlTally() *flTally { return &flTally{n: map[string]*[numFlKinds]uint64{}} }

func (t *flTally) add(route string, k flKind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.n[route]
	if a == nil {
		a = new([numFlKinds]uint64)
		t.n[route] = a
	}
	a[k]++
}

// flRouteWant is one route's expected fleet counts.
type flRouteWant struct {
	counts     SourceCounts
	converted  uint64
	rejections map[string]uint64
}

// want turns the tally into expected counts per route, modes as
// configured in testRoutes.
func (t *flTally) want() map[string]*flRouteWant {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]*flRouteWant{}
	for route, a := range t.n {
		w := &flRouteWant{rejections: map[string]uint64{}}
		for k := flKind(0); k < numFlKinds; k++ {
			n := a[k]
			if n == 0 {
				continue
			}
			src, reason, hasReason, conv, _ := flExpect(testRoutes[route], k)
			w.counts.add(src, n)
			if hasReason {
				w.rejections[reason.String()] += n
			}
			if conv {
				w.converted += n
			}
		}
		out[route] = w
	}
	return out
}

func (t *flTally) total() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n uint64
	for _, a := range t.n {
		for _, v := range a {
			n += v
		}
	}
	return n
}

// flInstance is one Bridge of a fleet with its own router.
type flInstance struct {
	b       *Bridge
	h       http.Handler
	cancel  context.CancelFunc
	done    chan error
	running bool
}

// newFlInstance builds a Bridge on rdb with its own mux router carrying
// testRoutes, reading sessions from store.
func newFlInstance(t testing.TB, id string, key *Key, store sessions.Store, rdb redis.UniversalClient, mod func(*Config)) *flInstance {
	t.Helper()
	router := newTestRouter(nil)
	b := newTestBridge(t, func(c *Config) {
		c.SigningKey = key
		c.Sessions = StoreSource(store, testSessionName)
		c.Routes = testRoutes
		c.Router = router
		c.Redis = rdb
		c.InstanceID = id
		c.FlushInterval = 30 * time.Millisecond
		c.FlushTimeout = 200 * time.Millisecond
		c.ModeRefreshInterval = time.Hour
		if mod != nil {
			mod(c)
		}
	})
	router.Use(b.Middleware)
	return &flInstance{b: b, h: router}
}

// run starts b.Run in a goroutine; stop ends it and waits.
func (in *flInstance) run() {
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done, in.running = cancel, make(chan error, 1), true
	go func() { in.done <- in.b.Run(ctx) }()
}

func (in *flInstance) stop(t testing.TB) {
	t.Helper()
	if !in.running {
		return
	}
	in.cancel()
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	in.running = false
}

// drive sends rounds of one request per (route, kind) through in,
// checking each status and recording it in tally.
func (in *flInstance) drive(t testing.TB, c *flCreds, tally *flTally, rounds int) {
	t.Helper()
	routes := flRoutes()
	for i := range rounds {
		for _, route := range routes {
			for k := flKind(0); k < numFlKinds; k++ {
				w := flServe(in.h, flPath(route), k, c, i)
				_, _, _, conv, status := flExpect(testRoutes[route], k)
				if w.Code != status {
					t.Errorf("%s %s: status %d, want %d", route, k, w.Code, status)
				}
				if conv && !strings.Contains(w.Header().Get("Set-Cookie"), DefaultCookieName+"=") {
					t.Errorf("%s %s: no JWT cookie set", route, k)
				}
				tally.add(route, k)
			}
		}
	}
}

// flSum sums the in-process counts of bridges per route.
func flSum(bs ...*Bridge) map[string]*flRouteWant {
	out := map[string]*flRouteWant{}
	for _, b := range bs {
		for _, rc := range b.Snapshot() {
			w := out[rc.Route]
			if w == nil {
				w = &flRouteWant{rejections: map[string]uint64{}}
				out[rc.Route] = w
			}
			for s, n := range rc.BySource() {
				w.counts.add(Source(s), n)
			}
			w.converted += rc.Conversions
			for r, n := range rc.Rejections {
				if n > 0 {
					w.rejections[Reason(r).String()] += n
				}
			}
		}
	}
	return out
}

// flCompare checks that got holds exactly want per route (routes missing
// from either side count as zero).
func flCompare(t testing.TB, what string, got, want map[string]*flRouteWant) {
	t.Helper()
	zero := &flRouteWant{}
	routes := map[string]bool{}
	for r := range got {
		routes[r] = true
	}
	for r := range want {
		routes[r] = true
	}
	for r := range routes {
		g, w := got[r], want[r]
		if g == nil {
			g = zero
		}
		if w == nil {
			w = zero
		}
		if g.counts != w.counts {
			t.Errorf("%s: route %s counts %+v, want %+v", what, r, g.counts, w.counts)
		}
		if g.converted != w.converted {
			t.Errorf("%s: route %s converted %d, want %d", what, r, g.converted, w.converted)
		}
		reasons := map[string]bool{}
		for k := range g.rejections {
			reasons[k] = true
		}
		for k := range w.rejections {
			reasons[k] = true
		}
		for k := range reasons {
			if g.rejections[k] != w.rejections[k] {
				t.Errorf("%s: route %s rejections[%s] %d, want %d", what, r, k, g.rejections[k], w.rejections[k])
			}
		}
	}
}

// fromReport turns a report into per-route counts, checking its totals
// and session shares on the way.
func fromReport(t testing.TB, rep *Report) map[string]*flRouteWant {
	t.Helper()
	out := map[string]*flRouteWant{}
	var tot Totals
	for _, r := range rep.Routes {
		if _, dup := out[r.Route]; dup {
			t.Errorf("report: route %s listed twice", r.Route)
		}
		rej := map[string]uint64{}
		for k, v := range r.Rejections {
			if v > 0 {
				rej[k] = v
			}
		}
		out[r.Route] = &flRouteWant{counts: r.Counts, converted: r.Converted, rejections: rej}
		if share := r.Counts.SessionShare(); r.SessionShare != share {
			t.Errorf("report: route %s session_share %v, want %v", r.Route, r.SessionShare, share)
		}
		tot.Session += r.Counts.Session
		tot.JWTCookie += r.Counts.JWTCookie
		tot.JWTBearer += r.Counts.JWTBearer
		tot.Anonymous += r.Counts.Anonymous
		tot.Rejected += r.Counts.Rejected
		tot.Converted += r.Converted
	}
	if rep.Totals != tot {
		t.Errorf("report totals %+v, want the sum of its routes %+v", rep.Totals, tot)
	}
	return out
}

// flReport reads the fleet report through b.
func flReport(t testing.TB, b *Bridge) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := b.Report(ctx, time.Time{})
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	return rep
}

// waitFor polls cond every 5ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// retryClient is a client whose replies time out quickly and which
// re-sends timed-out commands (go-redis retries pipelines on a read
// timeout): the setting that double-counts a plain HINCRBY flush.
func retryClient(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt := srv.Options()
	opt.ReadTimeout = 40 * time.Millisecond
	opt.MaxRetries = 4
	opt.MinRetryBackoff = 2 * time.Millisecond
	opt.MaxRetryBackoff = 10 * time.Millisecond
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// warmPool leaves n idle connections in c's pool, so that a retry can
// be written on a pooled connection without a handshake.
func warmPool(t testing.TB, c *redis.Client, n int) {
	t.Helper()
	ctx := context.Background()
	var conns []*redis.Conn
	for range n {
		cn := c.Conn()
		if err := cn.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING: %v", err)
		}
		conns = append(conns, cn)
	}
	for _, cn := range conns {
		_ = cn.Close()
	}
}

// TestFleetExactlyOnce is the headline test: three instances, one Redis,
// requests of every source on routes of every mode, an instance closed
// half-way, Redis paused while requests continue, batches re-sent after
// lost replies (by the bridge and by go-redis itself): the fleet report
// equals exactly what was served, and the sum of the in-process counts.
func TestFleetExactlyOnce(t *testing.T) {
	srv := redistest.New(t)
	key := newTestKey(t)
	store := sessions.NewCookieStore(testHashKey)
	creds := newFlCreds(t, key, store, 4)
	tally := newFlTally()

	in := []*flInstance{
		newFlInstance(t, "web-0", key, store, srv.Client(), nil),
		// web-1's client times out after 40ms and retries: its flushes
		// are re-sent by go-redis whenever Redis is slow.
		newFlInstance(t, "web-1", key, store, retryClient(t, srv), nil),
		newFlInstance(t, "web-2", key, store, srv.Client(), nil),
	}
	bs := []*Bridge{in[0].b, in[1].b, in[2].b}
	for _, x := range in {
		x.run()
	}
	defer func() {
		for _, x := range in {
			x.stop(t)
		}
	}()

	// driveAll sends rounds through the given instances concurrently,
	// two clients each.
	driveAll := func(rounds int, xs ...*flInstance) {
		var wg sync.WaitGroup
		for _, x := range xs {
			for range 2 {
				wg.Go(func() { x.drive(t, creds, tally, rounds) })
			}
		}
		wg.Wait()
	}

	// Phase 1: all three serve while Run flushes every 30ms.
	driveAll(6, in...)
	time.Sleep(60 * time.Millisecond)

	// Phase 2: web-2 shuts down half-way; Close flushes what it has.
	driveAll(2, in[2])
	if err := in[2].b.Close(); err != nil {
		t.Fatalf("web-2 Close with Redis up: %v", err)
	}
	select {
	case <-in[2].done:
		in[2].running = false
	case <-time.After(2 * time.Second):
		t.Fatal("web-2 Run did not return after Close")
	}
	if got, want := in[2].b.flusher.flushed.Load(), totalRequests(in[2].b); got != want {
		t.Errorf("web-2 after Close: %d requests flushed, want all %d", got, want)
	}
	if lost := in[2].b.flusher.lostOnClose.Load(); lost != 0 {
		t.Errorf("web-2 lost %d requests at Close with Redis up", lost)
	}

	// Phase 3: Redis hangs; requests go on, flushes fail and keep their
	// batch.
	errs0, errs1 := in[0].b.flusher.errors.Load(), in[1].b.flusher.errors.Load()
	srv.Pause()
	paused := true
	defer func() {
		if paused {
			srv.Resume()
		}
	}()
	start := time.Now()
	for in[0].b.flusher.errors.Load() < errs0+2 || in[1].b.flusher.errors.Load() < errs1+2 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("flushes did not fail while Redis was paused")
		}
		driveAll(1, in[0], in[1])
	}
	for _, x := range in[:2] {
		x.b.flusher.mu.Lock()
		pending := x.b.flusher.pending
		x.b.flusher.mu.Unlock()
		if pending == nil {
			t.Errorf("%s: no pending batch while Redis is paused", x.b.flusher.instance)
		}
	}
	srv.Resume()
	paused = false

	// Phase 4: Redis is back; the pending batches and the rest go out.
	driveAll(3, in[0], in[1])
	waitFor(t, 5*time.Second, "the running instances to catch up", func() bool {
		for _, x := range in[:2] {
			x.b.flusher.mu.Lock()
			pending := x.b.flusher.pending
			x.b.flusher.mu.Unlock()
			if pending != nil || x.b.flusher.flushed.Load() != totalRequests(x.b) {
				return false
			}
		}
		return true
	})
	for _, x := range in[:2] {
		x.stop(t)
	}
	flCompare(t, "report after the outage", fromReport(t, flReport(t, in[0].b)), tally.want())

	// Phase 5: a reply lost after Redis applied the batch. web-0 sends
	// the same batch twice: the second application is skipped. Then it
	// holds the batch as pending (as after a failed reply) and flushes:
	// the re-send is skipped too, and the batch counts as delivered.
	driveAll(2, in[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f := in[0].b.flusher
	now := in[0].b.cfg.Now()
	f.mu.Lock()
	bt := f.next(now)
	f.mu.Unlock()
	if bt == nil || bt.total == 0 {
		t.Fatal("no batch to re-send")
	}
	if err := f.send(ctx, bt, now); err != nil {
		t.Fatalf("send: %v", err)
	}
	afterFirst := fromReport(t, flReport(t, in[0].b))
	flCompare(t, "report after the batch", afterFirst, tally.want())
	if err := f.send(ctx, bt, now); err != nil {
		t.Fatalf("send again: %v", err)
	}
	flCompare(t, "report after the same batch twice", fromReport(t, flReport(t, in[0].b)), afterFirst)
	// The script itself says it skipped it.
	args := append([]any{bt.seq, int64(f.ttl / time.Second)}, bt.fields...)
	if n, err := flushScript.Run(ctx, srv.Client(), []string{f.seqKey, f.keys.hour(bt.at)}, args...).Int(); err != nil || n != 0 {
		t.Errorf("flushScript on an applied batch: %d, %v; want 0 (skipped)", n, err)
	}
	flushedBefore := f.flushed.Load()
	f.mu.Lock()
	f.pending = bt
	f.mu.Unlock()
	if err := in[0].b.Flush(ctx); err != nil {
		t.Fatalf("Flush of the re-sent batch: %v", err)
	}
	f.mu.Lock()
	if f.pending != nil {
		t.Error("the re-sent batch is still pending after Redis acknowledged it")
	}
	f.mu.Unlock()
	if got := f.flushed.Load() - flushedBefore; got != bt.total {
		t.Errorf("flushed grew by %d after the re-send, want the batch's %d", got, bt.total)
	}
	flCompare(t, "report after the re-send", fromReport(t, flReport(t, in[0].b)), afterFirst)

	// Phase 6: go-redis re-sends by itself. Redis hangs right as web-1's
	// flush is written: the attempt times out (40ms) while the command
	// waits in Redis' socket; go-redis retries on other pooled
	// connections; Redis wakes up and runs every copy. One applies.
	driveAll(2, in[1])
	rc1 := in[1].b.cfg.Redis.(*redis.Client)
	warmPool(t, rc1, 6)
	evals := srv.CommandCalls("eval")
	srv.Pause()
	paused = true
	resumed := make(chan struct{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		srv.Resume()
		close(resumed)
	}()
	ferr := in[1].b.Flush(ctx)
	<-resumed
	paused = false
	if ferr != nil {
		// Every attempt timed out: the batch stays pending and the next
		// flush re-sends it once more.
		t.Logf("flush during the hang: %v (re-sent below)", ferr)
		if err := in[1].b.Flush(ctx); err != nil {
			t.Fatalf("Flush after Redis woke up: %v", err)
		}
	}
	if n := srv.CommandCalls("eval") - evals; n < 2 {
		t.Errorf("the batch reached Redis %d times; the test wants a re-send (≥ 2)", n)
	} else {
		t.Logf("the batch reached Redis %d times", n)
	}
	flCompare(t, "report after go-redis re-sent", fromReport(t, flReport(t, in[0].b)), tally.want())

	// Phase 7: shut the rest down; the report is exactly what was served,
	// and exactly the sum of the instances' own counts.
	for _, x := range in[:2] {
		if err := x.b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	rep := flReport(t, in[0].b)
	got := fromReport(t, rep)
	flCompare(t, "fleet report vs served", got, tally.want())
	flCompare(t, "fleet report vs in-process counts", got, flSum(bs...))

	var flushed uint64
	for _, b := range bs {
		flushed += b.flusher.flushed.Load()
		if n := b.flusher.lostOnClose.Load(); n != 0 {
			t.Errorf("%s lost %d requests", b.flusher.instance, n)
		}
	}
	if total := tally.total(); flushed != total || totalRequests(bs[0])+totalRequests(bs[1])+totalRequests(bs[2]) != total {
		t.Errorf("flushed %d, served %d", flushed, total)
	}
	if rep.DistinctSessions != int64(len(creds.sessions)) {
		t.Errorf("distinct_sessions %d, want %d", rep.DistinctSessions, len(creds.sessions))
	}
	for _, r := range rep.Routes {
		if want, ok := testRoutes[r.Route]; ok && r.Mode != want.String() {
			t.Errorf("route %s mode %q, want %q", r.Route, r.Mode, want)
		}
	}
	if tot := rep.Totals; tot.Session == 0 || tot.JWTBearer == 0 || tot.JWTCookie == 0 || tot.Anonymous == 0 || tot.Rejected == 0 || tot.Converted == 0 {
		t.Errorf("a source is missing from the traffic: %+v", tot)
	}
	t.Logf("served %d requests: %+v", tally.total(), rep.Totals)
}

// TestFlushPendingWhileRedisDown: while Redis does not answer, counts
// accumulate in the atomics and exactly one batch waits, unchanged; when
// Redis is back everything arrives once. Close with Redis down gives up
// within FlushTimeout, returns an error and exports the lost count.
func TestFlushPendingWhileRedisDown(t *testing.T) {
	srv := redistest.New(t)
	store := sessions.NewCookieStore(testHashKey)
	key := newTestKey(t)
	creds := newFlCreds(t, key, store, 2)
	x := newFlInstance(t, "solo", key, store, srv.Client(), func(c *Config) { c.FlushTimeout = 100 * time.Millisecond })
	b, f := x.b, x.b.flusher
	// Flushes give up after 100ms, as Run's do with FlushTimeout.
	flush := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return b.Flush(ctx)
	}
	serve := func(n int) {
		for i := range n {
			flServe(x.h, "/legacy", flBearer, creds, i)
		}
	}
	pending := func() *batch {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.pending
	}

	serve(10)
	srv.Pause()
	defer srv.Resume()
	if err := flush(); err == nil {
		t.Fatal("Flush with Redis paused: no error")
	}
	first := pending()
	if first == nil || first.total != 10 || first.seq != 1 {
		t.Fatalf("pending batch %+v, want seq 1 with 10 requests", first)
	}
	nfields := len(first.fields)
	for range 3 {
		serve(20)
		if err := flush(); err == nil {
			t.Fatal("Flush with Redis paused: no error")
		}
		if p := pending(); p != first || p.total != 10 || len(p.fields) != nfields {
			t.Fatalf("pending batch changed while Redis was down: %+v", p)
		}
	}
	f.mu.Lock()
	seq := f.seq
	f.mu.Unlock()
	if seq != 1 {
		t.Errorf("%d batches made while Redis was down, want 1", seq)
	}
	if got := totalRequests(b); got != 70 {
		t.Errorf("in-process count %d, want 70", got)
	}
	m := gatherMetrics(t, b)
	if m[`sessionbridge_flush_pending_requests`] != 10 || m[`sessionbridge_flush_errors_total`] != 4 ||
		m[`sessionbridge_flushed_requests_total`] != 0 {
		t.Errorf("flush metrics while Redis is down: %v", m)
	}
	srv.Resume()

	// One flush sends the pending batch, then the rest.
	if err := flush(); err != nil {
		t.Fatalf("Flush after Redis is back: %v", err)
	}
	if p := pending(); p != nil {
		t.Errorf("still pending after a good flush: %+v", p)
	}
	rep := flReport(t, b)
	if got := fromReport(t, rep)["/legacy"]; got == nil || got.counts != (SourceCounts{JWTBearer: 70}) {
		t.Errorf("fleet counts of /legacy: %+v, want 70 jwt_bearer", got)
	}
	m = gatherMetrics(t, b)
	if m[`sessionbridge_flush_pending_requests`] != 0 || m[`sessionbridge_flushed_requests_total`] != 70 {
		t.Errorf("flush metrics after recovery: %v", m)
	}

	// A flush with nothing pending is one round trip.
	serve(1)
	resetRedisStats(t, srv)
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if calls := redisCalls(t, srv); calls["eval"] != 1 || calls["hset"] != 1 {
		t.Errorf("one flush ran %v; want one batch and one publication of the modes", calls)
	}

	// Close with Redis hung: bounded, an error, the loss exported.
	serve(5)
	srv.Pause()
	start := time.Now()
	err := b.Close()
	if err == nil {
		t.Fatal("Close with Redis paused: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with FlushTimeout 100ms", d)
	}
	if got := gatherMetrics(t, b)[`sessionbridge_flush_dropped_total{kind="request"}`]; got != 5 {
		t.Errorf(`sessionbridge_flush_dropped_total{kind="request"} = %v, want 5`, got)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !strings.Contains(logsOf(b).String(), "final flush failed") {
		t.Errorf("no log of the lost counts:\n%s", logsOf(b))
	}
}

// TestFlushCloseRedisRefused: Close against a Redis that refuses
// connections fails fast and exports what it lost, pending batch
// included.
func TestFlushCloseRedisRefused(t *testing.T) {
	srv := redistest.New(t)
	store := sessions.NewCookieStore(testHashKey)
	key := newTestKey(t)
	creds := newFlCreds(t, key, store, 1)
	x := newFlInstance(t, "solo", key, store, srv.Client(), nil)
	for i := range 4 {
		flServe(x.h, "/dual", flSession, creds, i)
	}
	srv.Kill()
	if err := x.b.Flush(context.Background()); err == nil {
		t.Fatal("Flush with Redis killed: no error")
	}
	for i := range 3 {
		flServe(x.h, "/dual", flBearer, creds, i)
	}
	if err := x.b.Close(); err == nil {
		t.Fatal("Close with Redis killed: no error")
	}
	if got := gatherMetrics(t, x.b)[`sessionbridge_flush_dropped_total{kind="request"}`]; got != 7 {
		t.Errorf("dropped requests %v, want 7 (4 pending + 3 not in a batch)", got)
	}
}

// TestFlushRestartedInstance: a process restarted with the same
// InstanceID numbers its batches from 1 again; its counts must still
// arrive (a sequence kept per instance ID would skip them as re-sends).
// Two live processes that share an InstanceID by mistake lose nothing
// either.
func TestFlushRestartedInstance(t *testing.T) {
	srv := redistest.New(t)
	store := sessions.NewCookieStore(testHashKey)
	key := newTestKey(t)
	creds := newFlCreds(t, key, store, 1)
	tally := newFlTally()
	ctx := context.Background()

	first := newFlInstance(t, "web-1", key, store, srv.Client(), nil)
	for range 3 {
		first.drive(t, creds, tally, 1)
		if err := first.b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.b.Close(); err != nil {
		t.Fatal(err)
	}

	// The "restarted" process, and a second one with the same ID.
	again := newFlInstance(t, "web-1", key, store, srv.Client(), nil)
	twin := newFlInstance(t, "web-1", key, store, srv.Client(), nil)
	for range 2 {
		again.drive(t, creds, tally, 1)
		twin.drive(t, creds, tally, 2)
		if err := again.b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := twin.b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []*flInstance{again, twin} {
		if err := x.b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	flCompare(t, "report after a restart", fromReport(t, flReport(t, again.b)), tally.want())
}

// TestFlushRunRetriesUntilRedisAnswers: Run keeps flushing on its own;
// counts made while Redis was dead arrive after it restarts.
func TestFlushRunRetriesUntilRedisAnswers(t *testing.T) {
	srv := redistest.New(t)
	store := sessions.NewCookieStore(testHashKey)
	key := newTestKey(t)
	creds := newFlCreds(t, key, store, 1)
	tally := newFlTally()
	x := newFlInstance(t, "solo", key, store, srv.Client(), nil)
	x.run()
	defer x.stop(t)
	srv.Kill()
	x.drive(t, creds, tally, 2)
	waitFor(t, 3*time.Second, "a failed flush", func() bool { return x.b.flusher.errors.Load() > 0 })
	if !strings.Contains(logsOf(x.b).String(), "counters kept in memory") {
		t.Errorf("no warning about the kept counters:\n%s", logsOf(x.b))
	}
	srv.Restart()
	x.drive(t, creds, tally, 1)
	waitFor(t, 5*time.Second, "the counts to reach Redis", func() bool {
		return x.b.flusher.flushed.Load() == tally.total()
	})
	flCompare(t, "report after Redis restarted", fromReport(t, flReport(t, x.b)), tally.want())
}

// TestFleetRedisKeys: every key carries the hash tag; hourly buckets
// expire after the retention; the distinct-sessions HyperLogLog counts
// distinct sessions; no raw session ID or session cookie reaches Redis.
func TestFleetRedisKeys(t *testing.T) {
	for _, prefix := range []string{"", "shop"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			fleetSrv := redistest.New(t)
			sessSrv := redistest.New(t) // sessions elsewhere: fleetSrv holds only what the bridge writes
			fleet := fleetSrv.Client()
			store := newTestStore(t, sessSrv.Client(), nil)
			router := newTestRouter(store)
			b := newTestBridge(t, func(c *Config) {
				c.Sessions = StoreSource(store, testSessionName)
				c.Routes = testRoutes
				c.Router = router
				c.Redis = fleet
				c.RedisPrefix = prefix
				c.Retention = 3 * time.Hour
			})
			router.Use(b.Middleware)
			tag := "{" + DefaultRedisPrefix + "}"
			if prefix != "" {
				tag = "{" + prefix + "}"
			}

			const nSessions = 50
			var secrets []string
			var ids []string
			for i := range nSessions {
				ck, id := saveSession(t, store, testUser(fmt.Sprint(i)))
				secrets = append(secrets, ck.Value, id)
				ids = append(ids, id)
				for j := range 3 {
					path := []string{"/legacy", "/dual", "/legacy/app"}[j]
					r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
					r.AddCookie(ck)
					w := httptest.NewRecorder()
					router.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						t.Fatalf("%s: %d %s", path, w.Code, w.Body)
					}
					if j == 1 {
						for _, c := range w.Result().Cookies() {
							if c.Name == DefaultCookieName {
								secrets = append(secrets, c.Value)
							}
						}
					}
				}
			}
			ctx := context.Background()
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := (&Fleet{Redis: fleet, Prefix: prefix}).SetMode(ctx, "/jwt", Dual); err != nil {
				t.Fatal(err)
			}

			keys, err := fleet.Keys(ctx, "*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) < 4 {
				t.Fatalf("keys %v: want hourly counts, seq, sessions, effective and modes", keys)
			}
			var hourly, days int
			var day string
			for _, k := range keys {
				if !strings.HasPrefix(k, tag+":") {
					t.Errorf("key %q lacks the hash tag %s", k, tag)
				}
				ttl, err := fleet.TTL(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case strings.HasPrefix(k, tag+":h:"):
					hourly++
					if ttl > 3*time.Hour || ttl < 3*time.Hour-time.Minute {
						t.Errorf("hourly bucket %s TTL %v, want ≈ the 3h retention", k, ttl)
					}
				case strings.HasPrefix(k, tag+":s:"):
					days++
					day = k
					if ttl <= 0 || ttl > 3*time.Hour {
						t.Errorf("session HyperLogLog %s TTL %v, want ≤ the retention", k, ttl)
					}
				case k == tag+":modes":
					// Operators' overrides: kept until reset.
				default:
					if ttl <= 0 || ttl > 3*time.Hour {
						t.Errorf("key %s TTL %v, want ≤ the retention", k, ttl)
					}
				}
			}
			if hourly == 0 || days != 1 {
				t.Errorf("%d hourly buckets and %d session HyperLogLogs, want ≥ 1 and 1", hourly, days)
			}
			// SCAN agrees with KEYS, in one slot's worth of names.
			var scanned []string
			iter := fleet.Scan(ctx, 0, tag+":*", 10).Iterator()
			for iter.Next(ctx) {
				scanned = append(scanned, iter.Val())
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
			if len(scanned) != len(keys) {
				t.Errorf("SCAN %s:* found %d keys, KEYS * %d", tag, len(scanned), len(keys))
			}

			// Distinct sessions: 50 sessions × 3 requests.
			if want := newKeys(prefix).day(time.Now()); day != want && time.Now().UTC().Hour() != 0 {
				t.Errorf("session HyperLogLog %q, want today's %q", day, want)
			}
			n, err := fleet.PFCount(ctx, day).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n < nSessions-2 || n > nSessions+2 {
				t.Errorf("PFCOUNT %s = %d, want %d ± 2", day, n, nSessions)
			}
			if rep := flReport(t, b); rep.DistinctSessions != n {
				t.Errorf("report distinct_sessions %d, PFCOUNT %d", rep.DistinctSessions, n)
			}
			// The HyperLogLog holds the keyed hashes: adding one again
			// changes nothing.
			if err := fleet.Copy(ctx, day, tag+":probe", 0, true).Err(); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids[:5] {
				if changed, err := fleet.PFAdd(ctx, tag+":probe", b.sids.sid(id)).Result(); err != nil || changed != 0 {
					t.Errorf("the hash of a seen session is not in the HyperLogLog (PFADD → %d, %v)", changed, err)
				}
			}
			fleet.Del(ctx, tag+":probe")

			// No raw session ID, session cookie or token anywhere.
			for _, k := range keys {
				var blob strings.Builder
				blob.WriteString(k)
				typ, err := fleet.Type(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch typ {
				case "string":
					blob.WriteString(fleet.Get(ctx, k).Val())
				case "hash":
					for f, v := range fleet.HGetAll(ctx, k).Val() {
						blob.WriteString(f + "=" + v + "\n")
					}
				default:
					t.Errorf("key %s of unexpected type %s", k, typ)
				}
				for _, s := range secrets {
					if strings.Contains(blob.String(), s) {
						t.Errorf("key %s holds a raw session ID, cookie or token %.12q…", k, s)
					}
				}
			}
		})
	}
}

// TestFleetRunModes: a mode set fleet-wide reaches a running Bridge within
// its ModeRefreshInterval, ResetMode rolls it back, and while Redis is down
// the last known modes stay.
func TestFleetRunModes(t *testing.T) {
	srv := redistest.New(t)
	store := sessions.NewCookieStore(testHashKey)
	key := newTestKey(t)
	creds := newFlCreds(t, key, store, 1)
	x := newFlInstance(t, "web-0", key, store, srv.Client(), func(c *Config) {
		c.ModeRefreshInterval = 20 * time.Millisecond
		c.FlushInterval = 20 * time.Millisecond
		c.FlushTimeout = 50 * time.Millisecond
	})
	fl := &Fleet{Redis: srv.Client()}
	ctx := context.Background()
	x.run()
	defer x.stop(t)

	if err := fl.SetMode(ctx, "/legacy", JWT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "/legacy to become jwt", func() bool { return x.b.Mode("/legacy") == JWT })
	if w := flServe(x.h, "/legacy", flSession, creds, 0); w.Code != http.StatusUnauthorized {
		t.Errorf("session on /legacy set to jwt at run time: %d, want 401", w.Code)
	}
	if m, err := fl.Modes(ctx); err != nil || m["/legacy"] != JWT || len(m) != 1 {
		t.Errorf("Fleet.Modes = %v, %v", m, err)
	}
	waitFor(t, 2*time.Second, "the effective mode to be published", func() bool {
		m, err := fl.EffectiveModes(ctx)
		return err == nil && m["/legacy"] == "jwt" && m["/dual"] == "dual"
	})

	if err := fl.ResetMode(ctx, "/legacy"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "/legacy to roll back", func() bool { return x.b.Mode("/legacy") == Legacy })
	if w := flServe(x.h, "/legacy", flSession, creds, 0); w.Code != http.StatusOK {
		t.Errorf("session on /legacy after the rollback: %d, want 200", w.Code)
	}

	// Redis down: the last known modes stay.
	if err := fl.SetMode(ctx, "/dual", JWT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "/dual to become jwt", func() bool { return x.b.Mode("/dual") == JWT })
	srv.Pause()
	time.Sleep(200 * time.Millisecond) // several failed refreshes
	if m := x.b.Mode("/dual"); m != JWT {
		t.Errorf("/dual fell back to %v while Redis was down; want the last known jwt", m)
	}
	if m := x.b.Mode("/legacy"); m != Legacy {
		t.Errorf("/legacy is %v while Redis was down; want legacy", m)
	}
	srv.Resume()
	if err := fl.ResetMode(ctx, "/dual"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "/dual to roll back", func() bool { return x.b.Mode("/dual") == Dual })

	// A mode this process set itself (Bridge.SetMode) survives the
	// refreshes; the fleet's rollback of another route leaves it alone.
	if err := x.b.SetMode("/legacy/app", Dual); err != nil {
		t.Fatal(err)
	}
	if err := fl.SetMode(ctx, "/jwt", Dual); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "/jwt to become dual", func() bool { return x.b.Mode("/jwt") == Dual })
	if err := fl.ResetMode(ctx, "/jwt"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "/jwt to roll back", func() bool { return x.b.Mode("/jwt") == JWT })
	time.Sleep(60 * time.Millisecond)
	if m := x.b.Mode("/legacy/app"); m != Dual {
		t.Errorf("/legacy/app set to dual in-process is %v after the refreshes", m)
	}

	// Bad input.
	if err := fl.SetMode(ctx, "legacy", JWT); err == nil {
		t.Error("Fleet.SetMode accepted a route that is not a path template")
	}
	if err := fl.SetMode(ctx, "/x", Mode(9)); err == nil {
		t.Error("Fleet.SetMode accepted an invalid mode")
	}
}

// TestFleetModesUnknownRoute: a route named fleet-wide that an instance
// has not seen yet gets its mode when it first shows up.
func TestFleetModesUnknownRoute(t *testing.T) {
	srv := redistest.New(t)
	store := sessions.NewCookieStore(testHashKey)
	key := newTestKey(t)
	creds := newFlCreds(t, key, store, 1)
	fl := &Fleet{Redis: srv.Client()}
	ctx := context.Background()
	if err := fl.SetMode(ctx, "/late/{id}", JWT); err != nil {
		t.Fatal(err)
	}
	x := newFlInstance(t, "web-0", key, store, srv.Client(), nil)
	x.run()
	defer x.stop(t)
	waitFor(t, 2*time.Second, "the override to be read at start", func() bool { return x.b.Mode("/late/{id}") == JWT })
	r := mux.NewRouter()
	r.Use(x.b.Middleware)
	r.HandleFunc("/late/{id}", identityHandler)
	if w := flServe(r, "/late/7", flSession, creds, 0); w.Code != http.StatusUnauthorized {
		t.Errorf("session on a late route set to jwt: %d", w.Code)
	}
	wantReasons(t, x.b, "/late/{id}", map[Reason]uint64{ReasonSessionOnJWT: 1})
}
