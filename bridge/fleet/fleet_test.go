package fleet

// The helpers the fleet's tests share: a Fleet that fails the test when
// New does, a Fleet running until the test ends, an instance with its
// Fleet (ftNode), and the counters of Bridges and of the report in one
// comparable form (ftCounts).

import (
	"context"
	"sort"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
)

// ftNewFleet returns New(cfg), failing the test on an error. Without a
// Bridge (Config.Fleet) it is the operator's view, bridgectl's way.
func ftNewFleet(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("fleet.New: %v", err)
	}
	return f
}

// ftKeys returns f's keys, failing the test when it has none yet.
func ftKeys(t testing.TB, f *Fleet) keys {
	t.Helper()
	k, err := f.keys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ftSeqKey returns the sequence key of f's run.
func ftSeqKey(t testing.TB, f *Fleet) string { return f.fl.seqKey(ftKeys(t, f)) }

// ftDefaultKeys are the keys of a Fleet with neither App nor Prefix
// attached to a bridgetest Bridge: its audience names them.
var ftDefaultKeys = newKeys(appPrefix(bridgetest.Audience))

// ftRun runs f until the test ends, then closes it.
func ftRun(t testing.TB, f *Fleet) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = f.Close()
	})
}

// ftNode is one instance (see bridgetest.Node: a Bridge with a
// redisstore.Store on its client, behind a plain httptest server,
// counting the Redis commands of its request path) with its Fleet on the
// same client, which does not run.
type ftNode struct {
	*bridgetest.Node
	f *Fleet
}

// ftNewNode builds an instance on rdb with a Fleet of fc (fc.Redis is set
// here), signing with key (nil: a key of its own), nd.Key.
func ftNewNode(t testing.TB, rdb redis.UniversalClient, key *bridgetest.Key, fc Config) *ftNode {
	t.Helper()
	fc.Redis = rdb
	f := ftNewFleet(t, fc)
	nd := bridgetest.NewNode(t, rdb, func(c *bridge.Config) {
		c.Fleet = f
		if key != nil {
			c.SigningKey = key.Key
		}
	})
	if key != nil {
		nd.Key = key
	}
	return &ftNode{Node: nd, f: f}
}

// ftCounts are counters by "route source", "route converted", "route
// retired" and "route reason=R", without zeros: the common ground of the
// in-process snapshot, the fleet report and a tally of what clients were
// served.
type ftCounts = map[string]uint64

// ftAddCounts adds one route's counters to m.
func ftAddCounts(m ftCounts, route string, sources bridge.SourceCounts, converted, retired, guests, reads uint64, rejections bridge.ReasonCounts) {
	for s, n := range sources.All() {
		if n > 0 {
			m[route+" "+s.String()] += n
		}
	}
	if converted > 0 {
		m[route+" converted"] += converted
	}
	if retired > 0 {
		m[route+" retired"] += retired
	}
	if guests > 0 {
		m[route+" guests"] += guests
	}
	if reads > 0 {
		m[route+" handler_reads"] += reads
	}
	for r, n := range rejections.All() {
		if n > 0 {
			m[route+" reason="+r.String()] += n
		}
	}
}

// ftSnapshotCounts are the in-process counters of bs, summed.
func ftSnapshotCounts(bs ...*bridge.Bridge) ftCounts {
	m := ftCounts{}
	for _, b := range bs {
		for _, rc := range b.Snapshot() {
			ftAddCounts(m, rc.Route, rc.Requests(), rc.Conversions, rc.Retired, rc.Guests, rc.HandlerReads, rc.Rejections)
		}
	}
	return m
}

// ftReportCounts are the counters of a fleet report.
func ftReportCounts(rep *Report) ftCounts {
	m := ftCounts{}
	for _, r := range rep.Routes {
		ftAddCounts(m, r.Route, r.Counts, r.Converted, r.Retired, r.GuestSessions, r.HandlerSessionReads, r.Rejections)
	}
	return m
}

// ftCompareCounts fails with every counter where got and want differ.
func ftCompareCounts(t testing.TB, what string, got, want ftCounts) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if got[k] != want[k] {
			t.Errorf("%s: %s: got %d, want %d", what, k, got[k], want[k])
		}
	}
}
