package redisstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// TestTopologySources: a Bridge reads legacy sessions on a Redis Cluster
// of three masters and on Sentinel (master, replica, three sentinels),
// each through redis.UniversalClient exactly as an application configures
// it, through the app's store (bridge.StoreSource over a Store) and
// through BojSource. (The fleet on these topologies is bridge/fleet's
// topology_test.go; the Store alone, TestTopologyStore.)
func TestTopologySources(t *testing.T) {
	t.Parallel()
	redistest.RunTopologies(t, func(t *testing.T, tp redistest.Topology, newClient func(testing.TB) redis.UniversalClient) {
		t.Run("sessions", func(t *testing.T) { tpSessions(t, newClient, tp.Cluster) })
	})
}

// tpSessions: sessions whose keys land on different slots (and masters)
// are read through the app's store (StoreSource, one GET) and through
// BojSource (GET + PTTL of one key in one pipeline: one slot, so fine on a
// cluster); the PTTL read on the topology bounds the minted token; a
// deleted session is session_unknown.
func tpSessions(t *testing.T, newClient func(testing.TB) redis.UniversalClient, cluster bool) {
	ctx := context.Background()
	rdb := newClient(t)
	key := bridgetest.NewKey(t)
	const sessionTTL = 120 * time.Second
	store := bridgetest.NewStore(t, rdb, func(c *redisstore.Config) {
		c.Options = &sessions.Options{Path: "/", MaxAge: int(sessionTTL / time.Second), HttpOnly: true}
	})

	type legacy struct {
		cookie *http.Cookie
		id     string
		user   string
	}
	const n = 24
	var ss []legacy
	var keys []string
	for i := range n {
		user := strconv.Itoa(100 + i)
		c, id := bridgetest.SaveSession(t, store, bridgetest.User(user))
		ss = append(ss, legacy{c, id, user})
		keys = append(keys, store.Key(id))
	}
	perMaster := redistest.KeysPerMaster(t, rdb, store.Key("")+"*")
	if got := tpSum(perMaster); got != n {
		t.Fatalf("session keys on the masters: got %d, want %d", got, n)
	}
	if cluster {
		if len(perMaster) < 2 {
			t.Errorf("session keys on %d master(s), want them spread over several: %v", len(perMaster), perMaster)
		}
		slots := map[int64]bool{}
		for _, k := range keys {
			slots[rdb.ClusterKeySlot(ctx, k).Val()] = true
		}
		t.Logf("%d sessions on %d slots, per master %v", n, len(slots), perMaster)
	}

	boj, err := redisstore.BojSource(rdb, bridgetest.SessionName, bridgetest.KeyPairs()...)
	if err != nil {
		t.Fatalf("BojSource: %v", err)
	}
	sources := []struct {
		name string
		src  bridge.SessionSource
		// ttlBound: tokens minted from this source never outlive the
		// session's TTL read from Redis (BojSource reads PTTL; StoreSource
		// asks redisstore.Store at conversion).
		ttlBound bool
	}{
		{"StoreSource", bridge.StoreSource(store, bridgetest.SessionName), true},
		{"BojSource", boj, true},
	}
	deleted := map[string]bool{}
	for i, s := range ss {
		if i%3 == 0 {
			deleted[s.id] = true
		}
	}
	for _, sc := range sources {
		t.Run(sc.name, func(t *testing.T) {
			nd := newTpNode(t, rdb, key, sc.src)
			for _, s := range ss {
				start := time.Now()
				r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, s.cookie)
				if r.StatusCode != http.StatusOK {
					t.Fatalf("session %s: status %d %s, want 200", s.user, r.StatusCode, r.Body)
				}
				if id := r.Identity(t); id.Source != "session" || id.Subject != s.user {
					t.Errorf("session %s: identity %+v, want source session, subject %s", s.user, id, s.user)
				}
				tok := r.Cookie(bridge.DefaultCookieName)
				if tok == nil {
					t.Fatalf("session %s: no JWT cookie minted", s.user)
				}
				life := bridgetest.TokenClaims(t, tok.Value).ExpiresAt.Sub(start)
				if sc.ttlBound && life > sessionTTL+time.Second {
					t.Errorf("session %s: token lives %v, past the session's TTL %v", s.user, life, sessionTTL)
				}
				if !sc.ttlBound && life < bridge.DefaultTokenTTL-time.Minute {
					t.Errorf("session %s: token lives %v, want TokenTTL %v", s.user, life, bridge.DefaultTokenTTL)
				}
			}
			bridgetest.WantRequests(t, nd.b, "/dual", map[bridge.Mode]map[bridge.Source]uint64{bridge.Dual: {bridge.SourceSession: n}})
			if got := bridgetest.RouteCounts(t, nd.b, "/dual").Conversions; got != n {
				t.Errorf("conversions: got %d, want %d", got, n)
			}
		})
	}
	// The direct read: values and the TTL, in one round trip.
	for _, s := range ss[:3] {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(s.cookie)
		got, err := boj.Load(r)
		if err != nil {
			t.Fatalf("BojSource.Load: %v", err)
		}
		if got.Values["user_id"] != s.user || got.TTL <= 0 || got.TTL > sessionTTL {
			t.Errorf("BojSource.Load: user %v TTL %v, want %s and 0 < TTL ≤ %v", got.Values["user_id"], got.TTL, s.user, sessionTTL)
		}
	}

	// A third of the sessions are deleted (logout elsewhere): both sources
	// say session_unknown (401 on a dual route), the others still work.
	for _, s := range ss {
		if deleted[s.id] {
			if err := store.Delete(ctx, s.id); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}
	}
	for _, sc := range sources {
		t.Run(sc.name+"/deleted", func(t *testing.T) {
			nd := newTpNode(t, rdb, key, sc.src)
			var gone, live uint64
			for _, s := range ss {
				r := bridgetest.Do(t, nd.c, http.MethodGet, nd.ts.URL+"/dual", nil, s.cookie)
				want, reason := http.StatusOK, ""
				if deleted[s.id] {
					want, reason = http.StatusUnauthorized, "session_unknown"
					gone++
				} else {
					live++
				}
				if r.StatusCode != want || r.Reason() != reason {
					t.Errorf("session %s (deleted %v): %d %q, want %d %q", s.user, deleted[s.id], r.StatusCode, r.Reason(), want, reason)
				}
			}
			bridgetest.WantRequests(t, nd.b, "/dual", map[bridge.Mode]map[bridge.Source]uint64{bridge.Dual: {bridge.SourceSession: live, bridge.SourceRejected: gone}})
			bridgetest.WantReasons(t, nd.b, "/dual", map[bridge.Reason]uint64{bridge.ReasonSessionUnknown: gone})
		})
	}
}

// tpNode is one instance: a Bridge reading sessions from src, with the
// router of bridgetest.NewRouter (its legacy handler on a Store of rdb)
// behind a plain httptest server.
type tpNode struct {
	b  *bridge.Bridge
	ts *httptest.Server
	c  *http.Client
}

// newTpNode builds an instance on rdb signing with key and reading
// sessions from src.
func newTpNode(t testing.TB, rdb redis.UniversalClient, key *bridgetest.Key, src bridge.SessionSource) *tpNode {
	t.Helper()
	nd := &tpNode{}
	router := bridgetest.NewRouter(bridgetest.NewStore(t, rdb, nil))
	nd.b, _, _ = bridgetest.NewBridge(t, func(c *bridge.Config) {
		c.SigningKey = key.Key
		c.Sessions = src
		c.Routes = bridgetest.Routes
		c.Router = router
	})
	router.Use(nd.b.Middleware)
	nd.ts = httptest.NewServer(router)
	t.Cleanup(nd.ts.Close)
	nd.c = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return nd
}

func tpSum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
