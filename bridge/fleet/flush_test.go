package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// Flush tests: several Bridge instances, each with its Fleet, flushing
// their counters into one real redis-server, with Redis paused, replies
// lost and flushes re-sent, and the fleet report compared with what was
// served, exactly.

// The traffic of these tests is bridgetest.Traffic's: every kind of
// credential on every route of bridgetest.Routes, tallied.

// ftInstance is one Bridge of a fleet with its Fleet and its own router.
type ftInstance struct {
	b       *bridge.Bridge
	f       *Fleet
	h       http.Handler
	logs    *syncbuf.Buffer // the Bridge's logs, and so the Fleet's
	cancel  context.CancelFunc
	done    chan error
	running bool
}

// ftNewInstance builds a Fleet on rdb (mod may change its configuration)
// and a Bridge of tr using it (see bridgetest.Traffic.NewBridge).
func ftNewInstance(t testing.TB, id string, tr *bridgetest.Traffic, rdb redis.UniversalClient, mod func(*Config)) *ftInstance {
	t.Helper()
	cfg := Config{
		Redis:               rdb,
		InstanceID:          id,
		FlushInterval:       30 * time.Millisecond,
		FlushTimeout:        200 * time.Millisecond,
		ModeRefreshInterval: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	in := &ftInstance{f: ftNewFleet(t, cfg)}
	in.b, in.h, in.logs = tr.NewBridge(t, in.f)
	return in
}

// run starts f.Run in a goroutine; stop ends it and waits.
func (in *ftInstance) run() {
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done, in.running = cancel, make(chan error, 1), true
	go func() { in.done <- in.f.Run(ctx) }()
}

func (in *ftInstance) stop(t testing.TB) {
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

// pending returns the batch waiting for Redis, if any.
func (in *ftInstance) pending() *batch {
	in.f.fl.mu.Lock()
	defer in.f.fl.mu.Unlock()
	return in.f.fl.pending
}

// ftSum sums the in-process counts of bridges per route.
func ftSum(bs ...*bridge.Bridge) map[string]*bridgetest.RouteWant {
	out := map[string]*bridgetest.RouteWant{}
	for _, b := range bs {
		for _, rc := range b.Snapshot() {
			w := out[rc.Route]
			if w == nil {
				w = &bridgetest.RouteWant{Rejections: map[string]uint64{}}
				out[rc.Route] = w
			}
			for s, n := range rc.Requests().All() {
				w.Counts.Add(s, n)
			}
			w.Converted += rc.Conversions
			for r, n := range rc.Rejections.All() {
				w.Rejections[r.String()] += n
			}
		}
	}
	return out
}

// ftCompare checks that got holds exactly want per route (routes missing
// from either side count as zero).
func ftCompare(t testing.TB, what string, got, want map[string]*bridgetest.RouteWant) {
	t.Helper()
	zero := &bridgetest.RouteWant{}
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
		if g.Counts != w.Counts {
			t.Errorf("%s: route %s counts %s, want %s", what, r, bridgetest.CountsString(g.Counts), bridgetest.CountsString(w.Counts))
		}
		if g.Converted != w.Converted {
			t.Errorf("%s: route %s converted %d, want %d", what, r, g.Converted, w.Converted)
		}
		reasons := map[string]bool{}
		for k := range g.Rejections {
			reasons[k] = true
		}
		for k := range w.Rejections {
			reasons[k] = true
		}
		for k := range reasons {
			if g.Rejections[k] != w.Rejections[k] {
				t.Errorf("%s: route %s rejections[%s] %d, want %d", what, r, k, g.Rejections[k], w.Rejections[k])
			}
		}
	}
}

// ftFromReport turns a report into per-route counts, checking its totals
// and session shares on the way.
func ftFromReport(t testing.TB, rep *Report) map[string]*bridgetest.RouteWant {
	t.Helper()
	out := map[string]*bridgetest.RouteWant{}
	var tot Totals
	for _, r := range rep.Routes {
		if _, dup := out[r.Route]; dup {
			t.Errorf("report: route %s listed twice", r.Route)
		}
		rej := map[string]uint64{}
		for k, v := range r.Rejections.All() {
			rej[k.String()] = v
		}
		out[r.Route] = &bridgetest.RouteWant{Counts: r.Counts, Converted: r.Converted, Rejections: rej}
		if share := r.Counts.SessionShare(); r.SessionShare != share {
			t.Errorf("report: route %s session_share %v, want %v", r.Route, r.SessionShare, share)
		}
		for s, n := range r.Counts.All() {
			tot.Add(s, n)
		}
		tot.Converted += r.Converted
		tot.Retired += r.Retired
	}
	if rep.Totals != tot {
		t.Errorf("report totals %s converted %d retired %d, want the sum of its routes %s converted %d retired %d",
			bridgetest.CountsString(rep.Totals.SourceCounts), rep.Totals.Converted, rep.Totals.Retired,
			bridgetest.CountsString(tot.SourceCounts), tot.Converted, tot.Retired)
	}
	return out
}

// ftReport reads the fleet report through f.
func ftReport(t testing.TB, f *Fleet) *Report {
	t.Helper()
	return bridgetest.Within(t, "Report", func(ctx context.Context) (*Report, error) { return f.Report(ctx, time.Time{}) })
}

// ftRetryClient is a client whose replies time out quickly and which
// re-sends timed-out commands (go-redis retries pipelines on a read
// timeout): the setting that double-counts a plain HINCRBY flush.
func ftRetryClient(t testing.TB, srv *redistest.Server) *redis.Client {
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

// ftWarmPool leaves n idle connections in c's pool, so that a retry can
// be written on a pooled connection without a handshake.
func ftWarmPool(t testing.TB, c *redis.Client, n int) {
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

// TestFleetNewConfig: New fills the defaults, keeps what it is given and
// refuses a missing Redis, negative durations, a retention shorter than
// an hour and braces in the prefix or the app (they become the hash tag),
// naming the field. The prefix is per app: App's, else the attached
// Bridge's audience's.
func TestFleetNewConfig(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // New does no I/O
	t.Cleanup(func() { _ = rdb.Close() })

	f, err := New(Config{Redis: rdb})
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	got := f.Config()
	for _, d := range []struct {
		name      string
		got, want time.Duration
	}{
		{"FlushInterval", got.FlushInterval, DefaultFlushInterval},
		{"FlushTimeout", got.FlushTimeout, DefaultFlushTimeout},
		{"ModeRefreshInterval", got.ModeRefreshInterval, DefaultModeRefreshInterval},
		{"Retention", got.Retention, DefaultRetention},
		{"ReadyAfter", got.ReadyAfter, DefaultReadyAfter},
	} {
		if d.got != d.want {
			t.Errorf("default %s: got %v, want %v", d.name, d.got, d.want)
		}
	}
	if got.Prefix != "" || got.App != "" || got.InstanceID == "" || got.Redis != rdb {
		t.Errorf("defaults: prefix %q, app %q, instance %q, redis %v; want no prefix or app before a Bridge names them, a random ID, the client",
			got.Prefix, got.App, got.InstanceID, got.Redis)
	}
	if _, err := f.Report(context.Background(), time.Time{}); !errors.Is(err, errUnnamed) {
		t.Errorf("Report of a Fleet with no app: %v, want errUnnamed", err)
	}
	// Its pages say so, not that Redis did not answer.
	if w := ftGetReport(t, f.ReportHandler(), ""); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "name the app") {
		t.Errorf("report of a Fleet with no app: %d %s, want 500 asking for its name", w.Code, w.Body)
	}
	w := httptest.NewRecorder()
	f.DashboardHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/migration/", nil))
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "has no app") {
		t.Errorf("dashboard of a Fleet with no app: %d, want 500 asking for its name", w.Code)
	}
	bridgetest.NewBridge(t, func(c *bridge.Config) { c.Fleet = f })
	if got := f.Config(); got.App != bridgetest.Audience || got.Prefix != DefaultPrefix+":"+bridgetest.Audience {
		t.Errorf("attached: app %q, prefix %q; want the Bridge's audience %q and %q", got.App, got.Prefix, bridgetest.Audience, DefaultPrefix+":"+bridgetest.Audience)
	}
	named, err := New(Config{Redis: rdb, App: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	bridgetest.NewBridge(t, func(c *bridge.Config) { c.Fleet = named })
	if got := named.Config(); got.App != "shop" || got.Prefix != "sessionbridge:shop" {
		t.Errorf("App shop: app %q, prefix %q; want shop, sessionbridge:shop", got.App, got.Prefix)
	}
	unnamed, _ := New(Config{Redis: rdb})
	if _, err := bridge.New(bridge.Config{SigningKey: bridgetest.NewKey(t).Key, Issuer: bridgetest.Issuer, Audience: "a{b}", Fleet: unnamed}); err == nil || !strings.Contains(err.Error(), "Config.App") {
		t.Errorf("an audience with braces naming the keys: %v, want an error pointing to Config.App", err)
	}
	if other, _ := New(Config{Redis: rdb}); other.Config().InstanceID == got.InstanceID {
		t.Errorf("two Fleets got the same random InstanceID %q", got.InstanceID)
	}
	kept := Config{Redis: rdb, Prefix: "shop", InstanceID: "web-7", FlushInterval: time.Second, FlushTimeout: time.Millisecond,
		ModeRefreshInterval: time.Minute, Retention: time.Hour, ReadyAfter: time.Nanosecond}
	f, err = New(kept)
	if err != nil {
		t.Fatalf("New(%+v): %v", kept, err)
	}
	if got := f.Config(); got.Prefix != kept.Prefix || got.InstanceID != kept.InstanceID || got.FlushInterval != kept.FlushInterval ||
		got.FlushTimeout != kept.FlushTimeout || got.ModeRefreshInterval != kept.ModeRefreshInterval ||
		got.Retention != kept.Retention || got.ReadyAfter != kept.ReadyAfter {
		t.Errorf("Config() = %+v, want %+v", got, kept)
	}

	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string // in the error
	}{
		{"no redis", func(c *Config) { c.Redis = nil }, "Config.Redis"},
		{"negative FlushInterval", func(c *Config) { c.FlushInterval = -time.Second }, "Config.FlushInterval"},
		{"negative FlushTimeout", func(c *Config) { c.FlushTimeout = -1 }, "Config.FlushTimeout"},
		{"negative ModeRefreshInterval", func(c *Config) { c.ModeRefreshInterval = -time.Minute }, "Config.ModeRefreshInterval"},
		{"negative Retention", func(c *Config) { c.Retention = -24 * time.Hour }, "Config.Retention"},
		{"negative ReadyAfter", func(c *Config) { c.ReadyAfter = -time.Hour }, "Config.ReadyAfter"},
		{"Retention under an hour", func(c *Config) { c.Retention = time.Hour - time.Second }, "Config.Retention"},
		{"Retention of a minute", func(c *Config) { c.Retention = time.Minute }, "Config.Retention"},
		{"opening brace in Prefix", func(c *Config) { c.Prefix = "{shop" }, "Config.Prefix"},
		{"closing brace in Prefix", func(c *Config) { c.Prefix = "shop}" }, "Config.Prefix"},
		{"hash tag as Prefix", func(c *Config) { c.Prefix = "{shop}" }, "Config.Prefix"},
		{"brace in App", func(c *Config) { c.App = "shop}" }, "Config.App"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Redis: rdb}
			c.mod(&cfg)
			f, err := New(cfg)
			if err == nil {
				t.Fatalf("New accepted it: %+v", f.Config())
			}
			if f != nil {
				t.Errorf("New returned a Fleet with the error %v", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "fleet: ") || !strings.Contains(msg, c.want) {
				t.Errorf("error %q: want a fleet: error naming %s", msg, c.want)
			}
		})
	}
}

// TestFleetAttachOnce: a Fleet serves one Bridge; a second bridge.New with
// it fails and leaves it serving the first. A Fleet no Bridge uses cannot
// flush; its Run waits for its context or Close.
func TestFleetAttachOnce(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	f, err := New(Config{Redis: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}

	// Unattached: Flush is an error, Run returns when its context ends or
	// at Close, Close has nothing to flush.
	if err := f.Flush(ctx); err == nil || !strings.HasPrefix(err.Error(), "fleet: ") {
		t.Errorf("Flush without a Bridge: %v, want a fleet: error", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := f.Run(rctx); err != nil {
		t.Errorf("Run without a Bridge: %v", err)
	}
	cancel()
	if rctx.Err() == nil {
		t.Error("Run without a Bridge returned before its context ended")
	}
	closing, err := New(Config{Redis: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- closing.Run(ctx) }()
	if err := closing.Close(); err != nil {
		t.Errorf("Close without a Bridge: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run without a Bridge after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run without a Bridge did not return after Close")
	}

	first, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.Fleet = f
		c.Routes = bridge.Routes{"/first": bridge.Dual}
	})
	key := bridgetest.NewKey(t)
	second, err := bridge.New(bridge.Config{SigningKey: key.Key, Issuer: bridgetest.Issuer, Audience: bridgetest.Audience,
		Routes: bridge.Routes{"/second": bridge.JWT}, Fleet: f})
	if err == nil {
		t.Fatalf("a second bridge.New with the same Fleet succeeded: %p", second)
	}
	if second != nil {
		t.Errorf("bridge.New returned a Bridge with the error %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "Config.Fleet") || !strings.Contains(msg, "already attached") {
		t.Errorf("second bridge.New: %q, want an error naming Config.Fleet and saying it is already attached", msg)
	}
	if err := f.Attach(first); err == nil {
		t.Error("Attach of the same Bridge again succeeded")
	}

	// Still the first Bridge's: its routes are the ones flushed and
	// reported.
	if err := f.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	modes, err := f.EffectiveModes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if modes["/first"] != "dual" || modes["/second"] != "" {
		t.Errorf("effective modes %v, want the first Bridge's /first=dual only", modes)
	}
	for _, r := range ftReport(t, f).Routes {
		if r.Route == "/second" {
			t.Errorf("the refused Bridge's route %s is in the report", r.Route)
		}
	}

	// The same Fleet configuration, as a new Fleet, serves another Bridge.
	g, err := New(f.Config())
	if err != nil {
		t.Fatal(err)
	}
	bridgetest.NewBridge(t, func(c *bridge.Config) { c.Fleet = g })
	if err := g.Flush(ctx); err != nil {
		t.Errorf("a new Fleet of the same configuration cannot flush for its own Bridge: %v", err)
	}
}

// TestFleetExactlyOnce is the headline test: three instances, one Redis,
// requests of every source on routes of every mode, an instance closed
// half-way, Redis paused while requests continue, batches re-sent after
// lost replies (by the fleet and by go-redis itself): the fleet report
// equals exactly what was served, and the sum of the in-process counts.
func TestFleetExactlyOnce(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 4)

	in := []*ftInstance{
		ftNewInstance(t, "web-0", tr, srv.Client(), nil),
		// web-1's client times out after 40ms and retries: its flushes
		// are re-sent by go-redis whenever Redis is slow.
		ftNewInstance(t, "web-1", tr, ftRetryClient(t, srv), nil),
		ftNewInstance(t, "web-2", tr, srv.Client(), nil),
	}
	bs := []*bridge.Bridge{in[0].b, in[1].b, in[2].b}
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
	driveAll := func(rounds int, xs ...*ftInstance) {
		var wg sync.WaitGroup
		for _, x := range xs {
			for range 2 {
				wg.Go(func() { tr.Drive(t, x.h, rounds) })
			}
		}
		wg.Wait()
	}

	// Phase 1: all three serve while Run flushes every 30ms.
	driveAll(6, in...)
	time.Sleep(60 * time.Millisecond)

	// Phase 2: web-2 shuts down half-way; Close flushes what it has.
	driveAll(2, in[2])
	if err := in[2].f.Close(); err != nil {
		t.Fatalf("web-2 Close with Redis up: %v", err)
	}
	select {
	case <-in[2].done:
		in[2].running = false
	case <-time.After(2 * time.Second):
		t.Fatal("web-2 Run did not return after Close")
	}
	if got, want := in[2].f.Stats().Flushed, bridgetest.TotalRequests(in[2].b); got != want {
		t.Errorf("web-2 after Close: %d requests flushed, want all %d", got, want)
	}
	if lost := in[2].f.Stats().LostOnClose; lost != 0 {
		t.Errorf("web-2 lost %d requests at Close with Redis up", lost)
	}

	// Phase 3: Redis hangs; requests go on, flushes fail and keep their
	// batch.
	errs0, errs1 := in[0].f.Stats().Errors, in[1].f.Stats().Errors
	srv.Pause()
	paused := true
	defer func() {
		if paused {
			srv.Resume()
		}
	}()
	start := time.Now()
	for in[0].f.Stats().Errors < errs0+2 || in[1].f.Stats().Errors < errs1+2 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("flushes did not fail while Redis was paused")
		}
		driveAll(1, in[0], in[1])
	}
	for _, x := range in[:2] {
		if x.pending() == nil {
			t.Errorf("%s: no pending batch while Redis is paused", x.f.Config().InstanceID)
		}
	}
	srv.Resume()
	paused = false

	// Phase 4: Redis is back; the pending batches and the rest go out.
	driveAll(3, in[0], in[1])
	bridgetest.Eventually(t, 5*time.Second, "the running instances to catch up", func() bool {
		for _, x := range in[:2] {
			if x.pending() != nil || x.f.Stats().Flushed != bridgetest.TotalRequests(x.b) {
				return false
			}
		}
		return true
	})
	for _, x := range in[:2] {
		x.stop(t)
	}
	ftCompare(t, "report after the outage", ftFromReport(t, ftReport(t, in[0].f)), tr.Tally.Want())

	// Phase 5: a reply lost after Redis applied the batch. web-0 sends
	// the same batch twice: the second application is skipped. Then it
	// holds the batch as pending (as after a failed reply) and flushes:
	// the re-send is skipped too, and the batch counts as delivered.
	driveAll(2, in[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fl := in[0].f.fl
	now := in[0].f.now()
	fl.mu.Lock()
	bt := fl.next(in[0].b, now)
	fl.mu.Unlock()
	if bt == nil || bt.total == 0 {
		t.Fatal("no batch to re-send")
	}
	if err := fl.send(ctx, ftKeys(t, in[0].f), in[0].b, bt, now); err != nil {
		t.Fatalf("send: %v", err)
	}
	afterFirst := ftFromReport(t, ftReport(t, in[0].f))
	ftCompare(t, "report after the batch", afterFirst, tr.Tally.Want())
	if err := fl.send(ctx, ftKeys(t, in[0].f), in[0].b, bt, now); err != nil {
		t.Fatalf("send again: %v", err)
	}
	ftCompare(t, "report after the same batch twice", ftFromReport(t, ftReport(t, in[0].f)), afterFirst)
	// The script itself says it skipped it.
	args := append([]any{bt.seq, int64(fl.ttl / time.Second)}, bt.fields...)
	if n, err := flushScript.Run(ctx, srv.Client(), []string{ftSeqKey(t, in[0].f), ftKeys(t, in[0].f).hour(bt.at)}, args...).Int(); err != nil || n != 0 {
		t.Errorf("flushScript on an applied batch: %d, %v; want 0 (skipped)", n, err)
	}
	flushedBefore := in[0].f.Stats().Flushed
	fl.mu.Lock()
	fl.pending = bt
	fl.mu.Unlock()
	if err := in[0].f.Flush(ctx); err != nil {
		t.Fatalf("Flush of the re-sent batch: %v", err)
	}
	if in[0].pending() != nil {
		t.Error("the re-sent batch is still pending after Redis acknowledged it")
	}
	if got := in[0].f.Stats().Flushed - flushedBefore; got != bt.total {
		t.Errorf("flushed grew by %d after the re-send, want the batch's %d", got, bt.total)
	}
	ftCompare(t, "report after the re-send", ftFromReport(t, ftReport(t, in[0].f)), afterFirst)

	// Phase 6: go-redis re-sends by itself. Redis hangs right as web-1's
	// flush is written: the attempt times out (40ms) while the command
	// waits in Redis' socket; go-redis retries on other pooled
	// connections; Redis wakes up and runs every copy. One applies.
	driveAll(2, in[1])
	rc1 := in[1].f.Config().Redis.(*redis.Client)
	ftWarmPool(t, rc1, 6)
	evals := srv.CommandCalls("eval")
	srv.Pause()
	paused = true
	resumed := make(chan struct{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		srv.Resume()
		close(resumed)
	}()
	ferr := in[1].f.Flush(ctx)
	<-resumed
	paused = false
	if ferr != nil {
		// Every attempt timed out: the batch stays pending and the next
		// flush re-sends it once more.
		t.Logf("flush during the hang: %v (re-sent below)", ferr)
		if err := in[1].f.Flush(ctx); err != nil {
			t.Fatalf("Flush after Redis woke up: %v", err)
		}
	}
	if n := srv.CommandCalls("eval") - evals; n < 2 {
		t.Errorf("the batch reached Redis %d times; the test wants a re-send (≥ 2)", n)
	} else {
		t.Logf("the batch reached Redis %d times", n)
	}
	ftCompare(t, "report after go-redis re-sent", ftFromReport(t, ftReport(t, in[0].f)), tr.Tally.Want())

	// Phase 7: shut the rest down; the report is exactly what was served,
	// and exactly the sum of the instances' own counts.
	for _, x := range in[:2] {
		if err := x.f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	rep := ftReport(t, in[0].f)
	got := ftFromReport(t, rep)
	ftCompare(t, "fleet report vs served", got, tr.Tally.Want())
	ftCompare(t, "fleet report vs in-process counts", got, ftSum(bs...))

	var flushed uint64
	for _, x := range in {
		flushed += x.f.Stats().Flushed
		if n := x.f.Stats().LostOnClose; n != 0 {
			t.Errorf("%s lost %d requests", x.f.Config().InstanceID, n)
		}
	}
	if total := tr.Tally.Total(); flushed != total || bridgetest.TotalRequests(bs[0])+bridgetest.TotalRequests(bs[1])+bridgetest.TotalRequests(bs[2]) != total {
		t.Errorf("flushed %d, served %d", flushed, total)
	}
	if rep.DistinctSessions != int64(len(tr.Creds.Sessions)) {
		t.Errorf("distinct_sessions %d, want %d", rep.DistinctSessions, len(tr.Creds.Sessions))
	}
	for _, r := range rep.Routes {
		if want, ok := bridgetest.Routes[r.Route]; ok && r.Mode != want.String() {
			t.Errorf("route %s mode %q, want %q", r.Route, r.Mode, want)
		}
	}
	if tot := rep.Totals; tot.Of(bridge.SourceSession) == 0 || tot.Of(bridge.SourceJWTBearer) == 0 || tot.Of(bridge.SourceJWTCookie) == 0 ||
		tot.Of(bridge.SourceAnonymous) == 0 || tot.Of(bridge.SourceRejected) == 0 || tot.Converted == 0 {
		t.Errorf("a source is missing from the traffic: %s converted %d", bridgetest.CountsString(tot.SourceCounts), tot.Converted)
	}
	t.Logf("served %d requests: %s converted %d", tr.Tally.Total(), bridgetest.CountsString(rep.Totals.SourceCounts), rep.Totals.Converted)
}

// TestFlushPendingWhileRedisDown: while Redis does not answer, counts
// accumulate in the atomics and exactly one batch waits, unchanged; when
// Redis is back everything arrives once. Close with Redis down gives up
// within FlushTimeout, returns an error and reports the lost count.
func TestFlushPendingWhileRedisDown(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 2)
	x := ftNewInstance(t, "solo", tr, srv.Client(), func(c *Config) { c.FlushTimeout = 100 * time.Millisecond })
	b, f := x.b, x.f
	// Flushes give up after 100ms, as Run's do with FlushTimeout.
	flush := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return f.Flush(ctx)
	}
	serve := func(n int) {
		for i := range n {
			bridgetest.Serve(x.h, "/legacy", bridgetest.KindBearer, tr.Creds, i)
		}
	}

	serve(10)
	srv.Pause()
	defer srv.Resume()
	if err := flush(); err == nil {
		t.Fatal("Flush with Redis paused: no error")
	}
	first := x.pending()
	if first == nil || first.total != 10 || first.seq != 1 {
		t.Fatalf("pending batch %+v, want seq 1 with 10 requests", first)
	}
	nfields := len(first.fields)
	for range 3 {
		serve(20)
		if err := flush(); err == nil {
			t.Fatal("Flush with Redis paused: no error")
		}
		if p := x.pending(); p != first || p.total != 10 || len(p.fields) != nfields {
			t.Fatalf("pending batch changed while Redis was down: %+v", p)
		}
	}
	f.fl.mu.Lock()
	seq := f.fl.seq
	f.fl.mu.Unlock()
	if seq != 1 {
		t.Errorf("%d batches made while Redis was down, want 1", seq)
	}
	if got := bridgetest.TotalRequests(b); got != 70 {
		t.Errorf("in-process count %d, want 70", got)
	}
	if st := f.Stats(); st.Pending != 10 || st.Errors != 4 || st.Flushed != 0 {
		t.Errorf("flush stats while Redis is down: %+v, want 10 pending, 4 errors, 0 flushed", st)
	}
	srv.Resume()

	// One flush sends the pending batch, then the rest.
	if err := flush(); err != nil {
		t.Fatalf("Flush after Redis is back: %v", err)
	}
	if p := x.pending(); p != nil {
		t.Errorf("still pending after a good flush: %+v", p)
	}
	rep := ftReport(t, f)
	var want bridge.SourceCounts
	want.Add(bridge.SourceJWTBearer, 70)
	if got := ftFromReport(t, rep)["/legacy"]; got == nil || got.Counts != want {
		t.Errorf("fleet counts of /legacy: %+v, want 70 jwt_bearer", got)
	}
	if st := f.Stats(); st.Pending != 0 || st.Flushed != 70 {
		t.Errorf("flush stats after recovery: %+v, want 0 pending, 70 flushed", st)
	}

	// A flush with nothing pending is one round trip.
	serve(1)
	bridgetest.ResetRedisStats(t, srv)
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	if calls := bridgetest.RedisCalls(t, srv); calls["eval"] != 1 || calls["hset"] != 2 {
		t.Errorf("one flush ran %v; want one batch, one publication of the modes and one of the app", calls)
	}

	// Close with Redis hung: bounded, an error, the loss reported.
	serve(5)
	srv.Pause()
	start := time.Now()
	err := f.Close()
	if err == nil {
		t.Fatal("Close with Redis paused: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with FlushTimeout 100ms", d)
	}
	if got := f.Stats().LostOnClose; got != 5 {
		t.Errorf("Stats().LostOnClose = %v, want 5", got)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !strings.Contains(x.logs.String(), "final flush failed") {
		t.Errorf("no log of the lost counts:\n%s", x.logs)
	}
}

// TestFlushCloseRedisRefused: Close against a Redis that refuses
// connections fails fast and reports what it lost, pending batch
// included.
func TestFlushCloseRedisRefused(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 1)
	x := ftNewInstance(t, "solo", tr, srv.Client(), nil)
	for i := range 4 {
		bridgetest.Serve(x.h, "/dual", bridgetest.KindSession, tr.Creds, i)
	}
	srv.Kill()
	if err := x.f.Flush(context.Background()); err == nil {
		t.Fatal("Flush with Redis killed: no error")
	}
	for i := range 3 {
		bridgetest.Serve(x.h, "/dual", bridgetest.KindBearer, tr.Creds, i)
	}
	if err := x.f.Close(); err == nil {
		t.Fatal("Close with Redis killed: no error")
	}
	if got := x.f.Stats().LostOnClose; got != 7 {
		t.Errorf("lost requests %v, want 7 (4 pending + 3 not in a batch)", got)
	}
}

// TestFlushRestartedInstance: a process restarted with the same
// InstanceID numbers its batches from 1 again; its counts must still
// arrive (a sequence kept per instance ID would skip them as re-sends).
// Two live processes that share an InstanceID by mistake lose nothing
// either.
func TestFlushRestartedInstance(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 1)
	ctx := context.Background()

	first := ftNewInstance(t, "web-1", tr, srv.Client(), nil)
	for range 3 {
		tr.Drive(t, first.h, 1)
		if err := first.f.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.f.Close(); err != nil {
		t.Fatal(err)
	}

	// The "restarted" process, and a second one with the same ID.
	again := ftNewInstance(t, "web-1", tr, srv.Client(), nil)
	twin := ftNewInstance(t, "web-1", tr, srv.Client(), nil)
	for range 2 {
		tr.Drive(t, again.h, 1)
		tr.Drive(t, twin.h, 2)
		if err := again.f.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := twin.f.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []*ftInstance{again, twin} {
		if err := x.f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ftCompare(t, "report after a restart", ftFromReport(t, ftReport(t, again.f)), tr.Tally.Want())
}

// TestFlushRunRetriesUntilRedisAnswers: Run keeps flushing on its own;
// counts made while Redis was dead arrive after it restarts.
func TestFlushRunRetriesUntilRedisAnswers(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 1)
	x := ftNewInstance(t, "solo", tr, srv.Client(), nil)
	x.run()
	defer x.stop(t)
	srv.Kill()
	tr.Drive(t, x.h, 2)
	bridgetest.Eventually(t, 3*time.Second, "a failed flush", func() bool { return x.f.Stats().Errors > 0 })
	if !strings.Contains(x.logs.String(), "counters kept in memory") {
		t.Errorf("no warning about the kept counters:\n%s", x.logs)
	}
	srv.Restart()
	tr.Drive(t, x.h, 1)
	bridgetest.Eventually(t, 5*time.Second, "the counts to reach Redis", func() bool {
		return x.f.Stats().Flushed == tr.Tally.Total()
	})
	ftCompare(t, "report after Redis restarted", ftFromReport(t, ftReport(t, x.f)), tr.Tally.Want())
}

// TestFleetRedisKeys: every key carries the hash tag; hourly buckets
// expire after the retention; the distinct-sessions HyperLogLog counts
// distinct sessions; no raw session ID or session cookie reaches Redis.
func TestFleetRedisKeys(t *testing.T) {
	for _, prefix := range []string{"", "shop"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			fleetSrv := redistest.New(t)
			sessSrv := redistest.New(t) // sessions elsewhere: fleetSrv holds only what the fleet writes
			rdb := fleetSrv.Client()
			// The test is about the fleet's keys, not the store's deadline:
			// a generous one keeps a loaded machine from failing a read.
			store := bridgetest.NewStore(t, sessSrv.Client(), func(c *redisstore.Config) { c.Timeout = 5 * time.Second })
			router := bridgetest.NewRouter(store)
			f, err := New(Config{Redis: rdb, Prefix: prefix, Retention: 3 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			b, _, logs := bridgetest.NewBridge(t, func(c *bridge.Config) {
				c.Sessions = bridge.StoreSource(store, bridgetest.SessionName)
				c.Routes = bridgetest.Routes
				c.Router = router
				c.Fleet = f
			})
			router.Use(b.Middleware)
			tag := "{" + DefaultPrefix + ":" + bridgetest.Audience + "}"
			if prefix != "" {
				tag = "{" + prefix + "}"
			}

			const nSessions = 50
			var secrets []string
			var sids []string // the keyed hashes of the sessions, from the sid claim of their JWT cookies
			for i := range nSessions {
				ck, id := bridgetest.SaveSession(t, store, bridgetest.User(fmt.Sprint(i)))
				secrets = append(secrets, ck.Value, id)
				for j := range 3 {
					path := []string{"/legacy", "/dual", "/legacy/app"}[j]
					r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
					r.AddCookie(ck)
					w := httptest.NewRecorder()
					router.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						t.Fatalf("%s: %d %s\nlogs:\n%s", path, w.Code, w.Body, logs)
					}
					if j == 1 {
						for _, c := range w.Result().Cookies() {
							if c.Name == bridge.DefaultCookieName {
								secrets = append(secrets, c.Value)
								sid := bridgetest.TokenClaims(t, c.Value).SID
								if sid == "" || sid == id {
									t.Fatalf("converted token sid %q: want the keyed hash of the session ID", sid)
								}
								sids = append(sids, sid)
							}
						}
					}
				}
			}
			if len(sids) != nSessions {
				t.Fatalf("%d sessions converted on /dual, want %d", len(sids), nSessions)
			}
			ctx := context.Background()
			if err := f.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			admin, err := New(Config{Redis: rdb, Prefix: prefix, App: bridgetest.Audience})
			if err != nil {
				t.Fatal(err)
			}
			if err := admin.SetMode(ctx, "/jwt", bridge.Dual); err != nil {
				t.Fatal(err)
			}

			keys, err := rdb.Keys(ctx, "*").Result()
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
				ttl, err := rdb.TTL(ctx, k).Result()
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
			iter := rdb.Scan(ctx, 0, tag+":*", 10).Iterator()
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
			if want := ftKeys(t, f).day(time.Now()); day != want && time.Now().UTC().Hour() != 0 {
				t.Errorf("session HyperLogLog %q, want today's %q", day, want)
			}
			n, err := rdb.PFCount(ctx, day).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n < nSessions-2 || n > nSessions+2 {
				t.Errorf("PFCOUNT %s = %d, want %d ± 2", day, n, nSessions)
			}
			if rep := ftReport(t, f); rep.DistinctSessions != n {
				t.Errorf("report distinct_sessions %d, PFCOUNT %d", rep.DistinctSessions, n)
			}
			// The HyperLogLog holds the keyed hashes: adding one again
			// changes nothing.
			if err := rdb.Copy(ctx, day, tag+":probe", 0, true).Err(); err != nil {
				t.Fatal(err)
			}
			for _, sid := range sids[:5] {
				if changed, err := rdb.PFAdd(ctx, tag+":probe", sid).Result(); err != nil || changed != 0 {
					t.Errorf("the hash of a seen session is not in the HyperLogLog (PFADD → %d, %v)", changed, err)
				}
			}
			rdb.Del(ctx, tag+":probe")

			// No raw session ID, session cookie or token anywhere.
			for _, k := range keys {
				var blob strings.Builder
				blob.WriteString(k)
				typ, err := rdb.Type(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch typ {
				case "string":
					blob.WriteString(rdb.Get(ctx, k).Val())
				case "hash":
					for f, v := range rdb.HGetAll(ctx, k).Val() {
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
			bridgetest.CheckNoSecrets(t, logs.String(), secrets...)
		})
	}
}

// TestFleetRunModes: a mode set fleet-wide reaches a running Bridge within
// its Fleet's ModeRefreshInterval, ResetMode rolls it back, and while
// Redis is down the last known modes stay.
func TestFleetRunModes(t *testing.T) {
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 1)
	x := ftNewInstance(t, "web-0", tr, srv.Client(), func(c *Config) {
		c.ModeRefreshInterval = 20 * time.Millisecond
		c.FlushInterval = 20 * time.Millisecond
		c.FlushTimeout = 50 * time.Millisecond
	})
	fl, err := New(Config{Redis: srv.Client(), App: bridgetest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	x.run()
	defer x.stop(t)

	if err := fl.SetMode(ctx, "/legacy", bridge.JWT); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 2*time.Second, "/legacy to become jwt", func() bool { return x.b.Mode("/legacy") == bridge.JWT })
	if w := bridgetest.Serve(x.h, "/legacy", bridgetest.KindSession, tr.Creds, 0); w.Code != http.StatusUnauthorized {
		t.Errorf("session on /legacy set to jwt at run time: %d, want 401", w.Code)
	}
	if m, err := fl.Modes(ctx); err != nil || m["/legacy"] != bridge.JWT || len(m) != 1 {
		t.Errorf("Fleet.Modes = %v, %v", m, err)
	}
	bridgetest.Eventually(t, 2*time.Second, "the effective mode to be published", func() bool {
		m, err := fl.EffectiveModes(ctx)
		return err == nil && m["/legacy"] == "jwt" && m["/dual"] == "dual"
	})

	if err := fl.ResetMode(ctx, "/legacy"); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 2*time.Second, "/legacy to roll back", func() bool { return x.b.Mode("/legacy") == bridge.Legacy })
	if w := bridgetest.Serve(x.h, "/legacy", bridgetest.KindSession, tr.Creds, 0); w.Code != http.StatusOK {
		t.Errorf("session on /legacy after the rollback: %d, want 200", w.Code)
	}

	// Redis down: the last known modes stay.
	if err := fl.SetMode(ctx, "/dual", bridge.JWT); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 2*time.Second, "/dual to become jwt", func() bool { return x.b.Mode("/dual") == bridge.JWT })
	srv.Pause()
	time.Sleep(200 * time.Millisecond) // several failed refreshes
	if m := x.b.Mode("/dual"); m != bridge.JWT {
		t.Errorf("/dual fell back to %v while Redis was down; want the last known jwt", m)
	}
	if m := x.b.Mode("/legacy"); m != bridge.Legacy {
		t.Errorf("/legacy is %v while Redis was down; want legacy", m)
	}
	srv.Resume()
	if err := fl.ResetMode(ctx, "/dual"); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 2*time.Second, "/dual to roll back", func() bool { return x.b.Mode("/dual") == bridge.Dual })

	// A mode this process set itself (Bridge.SetMode) survives the
	// refreshes; the fleet's rollback of another route leaves it alone.
	if err := x.b.SetMode("/legacy/app", bridge.Dual); err != nil {
		t.Fatal(err)
	}
	if err := fl.SetMode(ctx, "/jwt", bridge.Dual); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 2*time.Second, "/jwt to become dual", func() bool { return x.b.Mode("/jwt") == bridge.Dual })
	if err := fl.ResetMode(ctx, "/jwt"); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 2*time.Second, "/jwt to roll back", func() bool { return x.b.Mode("/jwt") == bridge.JWT })
	time.Sleep(60 * time.Millisecond)
	if m := x.b.Mode("/legacy/app"); m != bridge.Dual {
		t.Errorf("/legacy/app set to dual in-process is %v after the refreshes", m)
	}

	// Bad input.
	if err := fl.SetMode(ctx, "legacy", bridge.JWT); err == nil {
		t.Error("Fleet.SetMode accepted a route that is not a path template")
	}
	if err := fl.SetMode(ctx, "/x", bridge.Mode(9)); err == nil {
		t.Error("Fleet.SetMode accepted an invalid mode")
	}
}

// TestFleetModesUnknownRoute: a route named fleet-wide that an instance
// has not seen yet gets its mode when it first shows up. The override is
// kept under the route's label: a template with its variables' patterns
// and one without name it alike.
func TestFleetModesUnknownRoute(t *testing.T) {
	const written, label = "/late/{id:[0-9]+}", "/late/{id}"
	srv := redistest.New(t)
	tr := bridgetest.NewTraffic(t, 1)
	fl, err := New(Config{Redis: srv.Client(), App: bridgetest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := fl.SetMode(ctx, written, bridge.JWT); err != nil {
		t.Fatal(err)
	}
	if m, err := fl.Modes(ctx); err != nil || len(m) != 1 || m[label] != bridge.JWT {
		t.Errorf("Fleet.Modes = %v, %v; want %s jwt", m, err, label)
	}
	x := ftNewInstance(t, "web-0", tr, srv.Client(), func(c *Config) { c.ModeRefreshInterval = 20 * time.Millisecond })
	x.run()
	defer x.stop(t)
	bridgetest.Eventually(t, 2*time.Second, "the override to be read at start", func() bool { return x.b.Mode(written) == bridge.JWT })
	r := mux.NewRouter()
	r.Use(x.b.Middleware)
	r.HandleFunc(written, bridgetest.IdentityHandler)
	if w := bridgetest.Serve(r, "/late/7", bridgetest.KindSession, tr.Creds, 0); w.Code != http.StatusUnauthorized {
		t.Errorf("session on a late route set to jwt: %d", w.Code)
	}
	bridgetest.WantReasons(t, x.b, label, map[bridge.Reason]uint64{bridge.ReasonSessionOnJWT: 1})

	if err := fl.ResetMode(ctx, label); err != nil {
		t.Fatal(err)
	}
	if m, err := fl.Modes(ctx); err != nil || len(m) != 0 {
		t.Errorf("Fleet.Modes after ResetMode(%q) = %v, %v", label, m, err)
	}
	bridgetest.Eventually(t, 2*time.Second, "the override to be dropped", func() bool { return x.b.Mode(written) == bridge.Legacy })
}
