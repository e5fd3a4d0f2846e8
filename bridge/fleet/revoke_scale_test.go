package fleet

// Revocations at scale, on a real redis-server: what an idle fleet costs
// Redis and each instance once the list is large, how fast the list
// spreads, and that neither repeated logouts of one session nor of one
// subject grow it. make test runs TestRevocationsAtScale with 20k
// revocations; make loadtest-revocations with 1M (REVOCATIONS), whose
// figures docs/operations.md quotes.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// rsStats is what Redis says about its own work: CPU seconds, bytes in
// and out, and calls of the commands an instance syncs revocations with.
type rsStats struct {
	at                  time.Time
	cpu                 float64
	in, out             int64
	xread, zscan, xinfo int64
	memory              int64
}

func rsRead(t testing.TB, rdb *redis.Client) rsStats {
	t.Helper()
	info, err := rdb.Info(context.Background(), "cpu", "stats", "commandstats", "memory").Result()
	if err != nil {
		t.Fatalf("INFO: %v", err)
	}
	field := func(name string) string {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
				return v
			}
		}
		return ""
	}
	num := func(name string) float64 {
		v, _ := strconv.ParseFloat(field(name), 64)
		return v
	}
	calls := func(cmd string) int64 {
		v, _, _ := strings.Cut(strings.TrimPrefix(field("cmdstat_"+cmd), "calls="), ",")
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return rsStats{
		at:  time.Now(),
		cpu: num("used_cpu_sys") + num("used_cpu_user"),
		in:  int64(num("total_net_input_bytes")), out: int64(num("total_net_output_bytes")),
		xread: calls("xread"), zscan: calls("zscan"), xinfo: calls("xinfo|stream"),
		memory: int64(num("used_memory")),
	}
}

// rsRates is Redis's work between two readings, per second.
type rsRates struct {
	cpuPercent          float64 // CPU time per wall time, in percent
	bytesPerSec         float64 // in plus out
	xread, zscan, xinfo int64
}

func (a rsStats) to(b rsStats) rsRates {
	secs := b.at.Sub(a.at).Seconds()
	return rsRates{
		cpuPercent:  100 * (b.cpu - a.cpu) / secs,
		bytesPerSec: float64(b.in-a.in+b.out-a.out) / secs,
		xread:       b.xread - a.xread, zscan: b.zscan - a.zscan, xinfo: b.xinfo - a.xinfo,
	}
}

func (r rsRates) String() string {
	return fmt.Sprintf("Redis CPU %.2f%%, %.0f B/s, XREAD %d, XINFO %d, ZSCAN %d", r.cpuPercent, r.bytesPerSec, r.xread, r.xinfo, r.zscan)
}

// rsHeap is the process's live heap after a collection.
func rsHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rsIdle measures an idle fleet for d.
func rsIdle(t testing.TB, rdb *redis.Client, d time.Duration) rsRates {
	before := rsRead(t, rdb)
	time.Sleep(d)
	return before.to(rsRead(t, rdb))
}

// TestRevocationsAtScale: with REVOCATIONS (default 20000) live
// revocations and two instances, an idle fleet costs Redis what it costs
// with none (no full read, one blocking XREAD per instance every
// revocationBlock), every instance refuses the last revoked token within
// 2s of its write, and a third instance started afterwards reads the list
// in pages. The figures are logged for docs/operations.md.
func TestRevocationsAtScale(t *testing.T) {
	total := 20_000
	if s := os.Getenv("REVOCATIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("REVOCATIONS %q: want a positive count", s)
		}
		total = n
	}
	idle := 3 * time.Second
	if total >= 200_000 {
		idle = 20 * time.Second
	}
	srv := redistest.New(t)
	rdb := srv.Client()
	key := bridgetest.NewKey(t)
	mk := func() rvNode {
		f := ftNewFleet(t, Config{Redis: srv.Client()})
		b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
			c.SigningKey = key.Key
			c.Fleet = f
			bridgetest.WithJWTRoute(c)
		})
		return rvNode{b: b, f: f}
	}
	heap0 := rsHeap()
	a, b := mk(), mk()
	ftRun(t, a.f)
	ftRun(t, b.f)
	time.Sleep(time.Second) // both are following the stream
	empty := rsIdle(t, rdb, idle)
	t.Logf("idle, no revocations: %v", empty)

	// Write: 4 clients, batches of 500 as a busy logout endpoint would
	// send them one by one (a batch costs one round trip).
	writer := ftNewFleet(t, Config{Redis: srv.Client(), App: bridgetest.Audience, FlushTimeout: 10 * time.Second})
	until := time.Now().Add(time.Hour)
	name := func(i int) string { return "load-" + strconv.Itoa(i) }
	const batch, writers = 500, 4
	start := rsRead(t, rdb)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := make([]bridge.Revocation, 0, batch)
			for i := w * batch; i < total; i += writers * batch {
				rs = rs[:0]
				for j := i; j < min(i+batch, total); j++ {
					rs = append(rs, bridge.Revocation{JTI: name(j), Until: until})
				}
				if err := writer.Revoke(context.Background(), rs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Revoke: %v", err)
	}
	written := rsRead(t, rdb)
	last := key.Mint(t, a.b, "u", func(c *bridge.Claims) { c.ID = name(total - 1) })
	first := key.Mint(t, a.b, "u", func(c *bridge.Claims) { c.ID = name(0) })
	for n, nd := range map[string]rvNode{"A": a, "B": b} {
		bridgetest.Eventually(t, 2*time.Second, n+" refuses the first and last revoked tokens", func() bool {
			return nd.denies(t, last) && nd.denies(t, first)
		})
	}
	synced := rsRead(t, rdb)
	writeSecs := written.at.Sub(start.at).Seconds()
	t.Logf("write: %d revocations in %.2fs (%.0f/s); while writing and syncing: %v",
		total, writeSecs, float64(total)/writeSecs, start.to(synced))
	if r := start.to(synced); r.zscan != 0 {
		t.Errorf("instances read the whole set while following: %v", r)
	}
	heap := rsHeap()
	t.Logf("instance memory: %.1f MiB per instance for %d revocations (%.0f B each); Redis used_memory %.1f MiB",
		float64(heap-heap0)/2/(1<<20), total, float64(heap-heap0)/2/float64(total), float64(synced.memory)/(1<<20))

	// Idle: the same cost as with no revocations.
	full := rsIdle(t, rdb, idle)
	t.Logf("idle, %d revocations: %v", total, full)
	maxXread := 2 * (int64(idle/revocationBlock) + 2) // two instances
	if full.zscan != 0 || full.xinfo != 0 || full.xread > maxXread {
		t.Errorf("idle fleet with %d revocations: %v, want no ZSCAN or XINFO and at most %d XREAD", total, full, maxXread)
	}
	if full.bytesPerSec > 2*empty.bytesPerSec+512 {
		t.Errorf("idle traffic grows with the list: %.0f B/s with %d revocations, %.0f B/s with none",
			full.bytesPerSec, total, empty.bytesPerSec)
	}

	// A new instance reads the set in pages.
	before := rsRead(t, rdb)
	t0 := time.Now()
	c := mk()
	ftRun(t, c.f)
	bridgetest.Eventually(t, 60*time.Second, "C learns the list", func() bool { return c.denies(t, first) && c.denies(t, last) })
	r := before.to(rsRead(t, rdb))
	t.Logf("a new instance learns %d revocations in %v: %v", total, time.Since(t0).Round(time.Millisecond), r)
	if want := int64(total/revocationPage + 1); r.zscan < want/2 || r.zscan > 4*want {
		t.Errorf("new instance: %d ZSCAN pages, want about %d", r.zscan, want)
	}
}

// TestRevocationStreamTrimmed: an instance whose place in the stream was
// trimmed away reads the whole set again, and misses nothing.
func TestRevocationStreamTrimmed(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	key := bridgetest.NewKey(t)
	f := ftNewFleet(t, Config{Redis: srv.Client()})
	b, _, _ := bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.SigningKey = key.Key
		c.Fleet = f
		bridgetest.WithJWTRoute(c)
	})
	nd := rvNode{b: b, f: f}
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	if err := f.Revoke(ctx, []bridge.Revocation{{JTI: "seen", Until: until}}); err != nil {
		t.Fatal(err)
	}
	pos, err := f.readRevocations(ctx, b)
	if err != nil || pos == "0-0" {
		t.Fatalf("readRevocations: %q %v", pos, err)
	}
	// While this instance is away, revocations come and the stream is
	// trimmed past its place.
	if err := f.Revoke(ctx, []bridge.Revocation{{JTI: "missed", Until: until}, {JTI: "kept", Until: until}}); err != nil {
		t.Fatal(err)
	}
	xs, _ := rdb.XRange(ctx, ftKeys(t, f).revocations(), "-", "+").Result()
	if len(xs) != 3 {
		t.Fatalf("stream holds %d entries, want 3", len(xs))
	}
	if err := rdb.XDel(ctx, ftKeys(t, f).revocations(), xs[0].ID, xs[1].ID).Err(); err != nil {
		t.Fatal(err)
	}
	missed := key.Mint(t, b, "u", func(c *bridge.Claims) { c.ID = "missed" })
	got, err := f.followRevocations(ctx, b, pos)
	if err != nil || got != "" {
		t.Fatalf("followRevocations after a trim: %q %v, want \"\" (read the set again)", got, err)
	}
	if nd.denies(t, missed) {
		t.Fatal("the trimmed entry is denied without reading the set: the test proves nothing")
	}
	// Run does just that.
	ftRun(t, f)
	bridgetest.Eventually(t, 2*time.Second, "the trimmed revocation learnt from the set", func() bool { return nd.denies(t, missed) })
	// In step, a follow returns the last entry's position.
	if _, err := f.readRevocations(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// TestRepeatedLogoutsBounded: logging one session out again and again
// leaves one entry in Redis; logging out ever new tokens of one subject
// without a session (a client that gets them cheaply) leaves a few jtis
// and one subject entry, and every instance
// refuses that subject's earlier tokens.
func TestRepeatedLogoutsBounded(t *testing.T) {
	s := rvNewShared(t)
	a, b := s.instance(t), s.instance(t)
	ctx := context.Background()
	members := func() []string {
		m, err := s.rdb.ZRange(ctx, ftDefaultKeys.revoked(), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	logout := func(tok string) int {
		return bridgetest.Do(t, &http.Client{Transport: a.C.Transport}, http.MethodPost, a.TS.URL+"/logout", bridgetest.Bearer(tok)).StatusCode
	}
	// One session, logged out through its token 50 times.
	sess, _ := bridgetest.SaveSession(t, s.store, bridgetest.User("1"))
	tok := a.Convert(t, sess)
	for range 50 {
		if got := logout(tok); got != http.StatusNoContent {
			t.Fatalf("logout: %d", got)
		}
	}
	if m := members(); len(m) != 1 || !strings.HasPrefix(m[0], "sid:") {
		t.Errorf("after 50 logouts of one session: %q, want its sid alone", m)
	}

	// One subject, 50 tokens without a session, each logged out.
	held := s.key.Mint(t, a.B, "2", nil) // never logged out itself
	for range 50 {
		if got := logout(s.key.Mint(t, a.B, "2", nil)); got != http.StatusNoContent {
			t.Fatalf("logout: %d", got)
		}
	}
	m := members()
	subs := 0
	for _, x := range m {
		if strings.HasPrefix(x, "sub:") {
			subs++
		}
	}
	// The session's sid, bridge's maxSubjectLogouts (8) jtis, the subject.
	if len(m) > 10 || subs != 1 {
		t.Errorf("after 50 logouts of one subject's tokens: %d entries (%d subjects), want at most 10 and one subject", len(m), subs)
	}
	for name, in := range map[string]*bridgetest.LogoutApp{"A": a, "B": b} {
		bridgetest.Eventually(t, 2*time.Second, "on "+name+", the subject's earlier token refused", func() bool {
			return in.Status(t, "/jwt", held, false) == http.StatusUnauthorized
		})
	}
}
