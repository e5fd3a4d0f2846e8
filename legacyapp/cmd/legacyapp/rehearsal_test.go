package main

import (
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
	"github.com/sessionbridge/sessionbridge/legacyapp/traffic"
)

// TestRehearsal drives the demo through the playbook's phases — observe,
// dual at 50%, dual at 100% with the pages migrated, jwt, retirement — on
// two instances sharing one real redis-server, each phase a rolling
// "deploy" (both instances restarted with the phase's environment), with
// the same simulated users (and cookie jars) throughout. It asserts that
// no user is ever logged out, that the fleet counts equal what was sent,
// that converted users cause no session reads, and that no legacy session
// is left in Redis after retirement.
func TestRehearsal(t *testing.T) {
	srv := redistest.New(t)
	dir := t.TempDir()
	key, err := bridge.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := bridge.MarshalKeyPEM(key)
	keyFile := filepath.Join(dir, "signing-key.pem")
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"REDIS_URL": srv.URL(), "SESSION_HASH_KEY": "rehearsal-session-hash-key-32-bytes!",
		"BRIDGE_SIGNING_KEY_FILE": keyFile, "BRIDGE_ISSUER": "http://rehearsal.test",
		"BRIDGE_INSECURE_COOKIES": "1", "BRIDGE_FLUSH_INTERVAL": "200ms", "LOG_LEVEL": "error",
	}
	addrs := []string{
		"127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
		"127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)),
	}
	const api = "/api/me=dual,/api/orders=dual,/api/orders/{id}=dual,/admin/users=dual"
	phases := []struct {
		name string
		env  map[string]string
	}{
		{"observe", map[string]string{"BRIDGE_DEFAULT_MODE": "legacy", "BRIDGE_MODES": "/api/me=legacy"}},
		{"dual 50%", map[string]string{"BRIDGE_MODES": api, "BRIDGE_ROLLOUT_PERCENT": "50"}},
		{"dual 100%, pages migrated", map[string]string{"BRIDGE_DEFAULT_MODE": "dual", "BRIDGE_MODES": api, "APP_MIGRATED_PAGES": "1"}},
		{"jwt", map[string]string{"BRIDGE_DEFAULT_MODE": "jwt", "BRIDGE_MODES": "/api/me=jwt", "APP_MIGRATED_PAGES": "1"}},
		{"retire", map[string]string{"BRIDGE_DEFAULT_MODE": "jwt", "BRIDGE_MODES": "/api/me=jwt", "APP_MIGRATED_PAGES": "1", "BRIDGE_RETIRE_SESSIONS": "1"}},
	}

	urls := []string{"http://" + addrs[0], "http://" + addrs[1]}
	sim, err := traffic.New(traffic.Config{
		BaseURLs: urls, Workers: 12, Seed: 11,
		Mix: traffic.Mix{traffic.Browser: 8, traffic.APIClient: 3, traffic.Anonymous: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]int{}
	ctx := context.Background()
	for _, ph := range phases {
		env := maps.Clone(base)
		maps.Copy(env, ph.env)
		stop := startInstances(t, addrs, env)
		srv.Client().ConfigResetStat(ctx)
		tally, err := sim.Run(ctx, 1500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		// Session reads are the GETs outside the counter flush, whose
		// script reads its sequence key with one GET per EVAL.
		calls := srv.CommandCallsOf("get", "eval")
		gets := calls[0] - calls[1]
		stop()
		for r, n := range tally.Routes {
			sent[r] += n
		}
		sent["/healthz"] += len(addrs) // each instance's readiness probe
		t.Logf("%-26s %5d requests, statuses %v, session reads (GET) %d", ph.name, tally.Total(), tally.Status, gets)
		if tally.LoggedOut > 0 {
			t.Errorf("%s: %d browser requests found their user logged out, want 0", ph.name, tally.LoggedOut)
		}
		if n := tally.ServerErrors(); n > 0 || tally.Errors > 0 {
			t.Errorf("%s: %d 5xx and %d transport errors, want 0", ph.name, n, tally.Errors)
		}
		if tally.Status[http.StatusUnauthorized] > tally.Expected["anonymous"] {
			t.Errorf("%s: %d 401s but only %d anonymous requests: someone with credentials was refused",
				ph.name, tally.Status[http.StatusUnauthorized], tally.Expected["anonymous"])
		}
		if ph.name == "jwt" && gets != 0 {
			t.Errorf("jwt phase: %d session reads, want 0 (every user holds a JWT)", gets)
		}
	}

	fl, err := fleet.New(fleet.Config{Redis: srv.Client(), App: "legacyapp"}) // the demo's audience
	if err != nil {
		t.Fatal(err)
	}
	rep, err := fl.Report(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Routes {
		got := r.Counts.Total()
		if got != uint64(sent[r.Route]) {
			t.Errorf("route %s: fleet count %d, sent %d", r.Route, got, sent[r.Route])
		}
		delete(sent, r.Route)
	}
	for r, n := range sent {
		t.Errorf("route %s: sent %d, absent from the fleet report", r, n)
	}
	n, err := fl.CountSessions(ctx, "session_")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet: session %d, jwt_cookie %d, jwt_bearer %d, converted %d, retired %d; legacy sessions left %d",
		rep.Totals.Of(bridge.SourceSession), rep.Totals.Of(bridge.SourceJWTCookie), rep.Totals.Of(bridge.SourceJWTBearer),
		rep.Totals.Converted, rep.Totals.Retired, n)
	if n != 0 {
		t.Errorf("legacy sessions left in Redis after retirement: %d, want 0", n)
	}
	if rep.Totals.Retired == 0 {
		t.Errorf("retired: got 0, want the users' sessions")
	}
}

// startInstances runs the demo on each address with env, waits until each
// serves, and returns a function that shuts them down gracefully (with the
// final counter flush) and waits for them.
func startInstances(t *testing.T, addrs []string, env map[string]string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var dones []chan error
	for _, addr := range addrs {
		e := maps.Clone(env)
		e["ADDR"] = addr
		done := make(chan error, 1)
		go func() { done <- run(ctx, envFunc(e), io.Discard) }()
		waitHealthy(t, "http://"+addr, done)
		dones = append(dones, done)
	}
	http.DefaultClient.CloseIdleConnections()
	return func() {
		cancel()
		for _, done := range dones {
			if err := <-done; err != nil {
				t.Errorf("instance: %v", err)
			}
		}
	}
}
