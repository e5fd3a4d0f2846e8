package fleet

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// TestReportGuestsAndHandlerReads: the per-route guest sessions and the
// handlers' session reads (the store WrapStore returned) reach the fleet
// report exactly, as guest_sessions and handler_session_reads.
func TestReportGuestsAndHandlerReads(t *testing.T) {
	srv := redistest.New(t)
	nd := ftNewNode(t, srv.Client(), nil, Config{})
	user, _ := bridgetest.SaveSession(t, nd.Store, bridgetest.User("1"))
	guest, _ := bridgetest.SaveSession(t, nd.Store, map[any]any{"cart": []string{"tea"}})
	get := func(path string, c *http.Cookie) {
		t.Helper()
		if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL(path), nil, c); r.StatusCode != 200 {
			t.Fatalf("%s: %d", path, r.StatusCode)
		}
	}
	for range 3 {
		get("/legacy/app", user) // the legacy handler reads the session
		get("/legacy", guest)
	}
	get("/legacy/app", guest)
	get("/legacy", user) // no handler read
	if err := nd.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := nd.f.Report(context.Background(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ftCompareCounts(t, "report vs in-process", ftReportCounts(rep), ftSnapshotCounts(nd.B))
	want := map[string][2]uint64{"/legacy/app": {1, 4}, "/legacy": {3, 0}}
	for _, r := range rep.Routes {
		if w, ok := want[r.Route]; ok && (r.GuestSessions != w[0] || r.HandlerSessionReads != w[1]) {
			t.Errorf("%s: guest_sessions %d, handler_session_reads %d, want %d and %d", r.Route, r.GuestSessions, r.HandlerSessionReads, w[0], w[1])
		}
	}
}
