package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/legacyapp/traffic"
)

// TestLoad drives the demo on a real redis-server with 64 concurrent
// simulated users (browser sessions converting to JWT cookies, bearer API
// clients, anonymous visitors, forgers) for LOAD_DURATION (default 3s;
// `make loadtest` runs it for 50s), then checks: no 5xx, nobody logged
// out, the fleet counts in Redis equal what was sent, route by route and
// by expected source, and goroutines and heap back to their baseline.
func TestLoad(t *testing.T) {
	duration := 3 * time.Second
	if s := os.Getenv("LOAD_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 60*time.Second {
			t.Fatalf("LOAD_DURATION %q: want a duration up to 60s", s)
		}
		duration = d
	}
	srv := redistest.New(t)
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	env := map[string]string{
		"ADDR": addr, "REDIS_URL": srv.URL(), "LOG_LEVEL": "error",
		"BRIDGE_INSECURE_COOKIES": "1", "BRIDGE_FLUSH_INTERVAL": "250ms",
		"SESSION_HASH_KEY": "load-test-session-hash-key-32-bytes!",
	}
	goroutines0, heap0 := baseline()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, envFunc(env), io.Discard) }()
	waitHealthy(t, "http://"+addr, done)
	http.DefaultClient.CloseIdleConnections()

	tally, err := traffic.Run(context.Background(), traffic.Config{
		BaseURL: "http://" + addr, Workers: 64, Duration: duration, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	// waitHealthy's one successful probe was served and counted too.
	tally.Routes["/healthz"]++
	tally.Expected["anonymous"]++
	total := tally.Total()
	t.Logf("%d requests in %v (%.0f req/s) with 64 clients; statuses %v; transport errors %d",
		total, duration, float64(total)/duration.Seconds(), tally.Status, tally.Errors)
	if n := tally.ServerErrors(); n > 0 {
		t.Errorf("5xx responses: got %d, want 0", n)
	}
	if tally.Errors > 0 {
		t.Errorf("transport errors: got %d, want 0", tally.Errors)
	}
	if tally.LoggedOut > 0 {
		t.Errorf("browser requests that found their user logged out: got %d, want 0", tally.LoggedOut)
	}

	// The fleet counts, after the final flush at shutdown.
	fl, err := fleet.New(fleet.Config{Redis: srv.Client(), App: "legacyapp"}) // the demo's audience
	if err != nil {
		t.Fatal(err)
	}
	rep, err := fl.Report(context.Background(), time.Time{})
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	got := map[string]uint64{}
	for _, r := range rep.Routes {
		got[r.Route] = r.Counts.Total()
	}
	for route, n := range tally.Routes {
		if got[route] != uint64(n) {
			t.Errorf("route %s: fleet count %d, sent %d", route, got[route], n)
		}
	}
	tt := rep.Totals
	checks := []struct {
		name string
		got  uint64
		want int
	}{
		{"session + jwt_cookie", tt.Of(bridge.SourceSession) + tt.Of(bridge.SourceJWTCookie), tally.Expected["session_or_jwt_cookie"]},
		{"jwt_bearer", tt.Of(bridge.SourceJWTBearer), tally.Expected["jwt_bearer"]},
		{"anonymous", tt.Of(bridge.SourceAnonymous), tally.Expected["anonymous"]},
		{"rejected", tt.Of(bridge.SourceRejected), tally.Expected["rejected"]},
	}
	for _, c := range checks {
		if c.got != uint64(c.want) {
			t.Errorf("%s: fleet %d, sent %d", c.name, c.got, c.want)
		}
	}
	t.Logf("fleet totals: session %d, jwt_cookie %d, jwt_bearer %d, anonymous %d, rejected %d, converted %d",
		tt.Of(bridge.SourceSession), tt.Of(bridge.SourceJWTCookie), tt.Of(bridge.SourceJWTBearer),
		tt.Of(bridge.SourceAnonymous), tt.Of(bridge.SourceRejected), tt.Converted)

	// Goroutines and heap back to baseline.
	deadline := time.Now().Add(10 * time.Second)
	var goroutines int
	var heap uint64
	for {
		goroutines, heap = baseline()
		if goroutines <= goroutines0+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d after; heap in use: %.1f MiB before, %.1f MiB after",
		goroutines0, goroutines, float64(heap0)/(1<<20), float64(heap)/(1<<20))
	if goroutines > goroutines0+2 {
		t.Errorf("goroutines: %d after, %d before: leak", goroutines, goroutines0)
	}
	if heap > heap0+32<<20 {
		t.Errorf("heap in use: %d bytes after, %d before: not back to baseline", heap, heap0)
	}
}

func baseline() (int, uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}
