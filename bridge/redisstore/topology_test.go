package redisstore_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// TestTopologyStore: the store on a Redis Cluster (3 masters) and on
// Sentinel, through redis.UniversalClient. Sessions whose keys land on
// different slots — and masters — are saved, loaded and deleted (both
// ways: Store.Delete and a save with MaxAge < 0); every operation is on
// one key, so none can be CROSSSLOT. On Sentinel the master is then
// killed: during the failover a load fails with ErrUnavailable and never
// passes for a missing session (a new, empty one without error), and
// afterwards the replicated sessions load from the promoted replica.
func TestTopologyStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (redis.UniversalClient, *redistest.Sentinel)
	}{
		{"cluster", func(t *testing.T) (redis.UniversalClient, *redistest.Sentinel) {
			return redistest.NewCluster(t, 3).Client(t), nil
		}},
		{"sentinel", func(t *testing.T) (redis.UniversalClient, *redistest.Sentinel) {
			s := redistest.NewSentinel(t)
			return s.Client(t), s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb, sentinel := tc.start(t)
			store := topoStore(t, rdb)

			const n = 32
			type saved struct {
				cookie *http.Cookie
				id     string
				values map[any]any
			}
			var ss []saved
			for i := range n {
				values := map[any]any{"user_id": strconv.Itoa(i), "n": i, "roles": []string{"user", "r" + strconv.Itoa(i)}}
				c, id := saveID(t, store, values)
				ss = append(ss, saved{c, id, values})
			}

			if cc, ok := rdb.(*redis.ClusterClient); ok {
				var keys []string
				for _, s := range ss {
					keys = append(keys, store.Key(s.id))
				}
				t.Run("spread", func(t *testing.T) { topoSpread(t, cc, keys) })
			}
			t.Run("load", func(t *testing.T) {
				for _, s := range ss {
					got, err := topoLoad(store, s.cookie)
					if err != nil || got.IsNew || got.ID != s.id {
						t.Fatalf("load: IsNew %v, err %v", got.IsNew, err)
					}
					if !reflect.DeepEqual(got.Values, s.values) {
						t.Errorf("values: got %v, want %v", got.Values, s.values)
					}
					ttl := rdb.TTL(ctx, store.Key(s.id)).Val()
					if ttl <= time.Duration(redisstore.DefaultMaxAge-60)*time.Second || ttl > time.Duration(redisstore.DefaultMaxAge)*time.Second {
						t.Errorf("TTL %v, want about MaxAge %ds", ttl, redisstore.DefaultMaxAge)
					}
				}
			})

			t.Run("delete", func(t *testing.T) {
				for i, s := range ss[:n/2] {
					if i%2 == 0 {
						if err := store.Delete(ctx, s.id); err != nil {
							t.Fatalf("Delete: %v", err)
						}
						continue
					}
					// A save with MaxAge < 0 deletes and expires the cookie.
					r := httptest.NewRequest(http.MethodGet, "/", nil)
					r.AddCookie(s.cookie)
					sess, err := store.Get(r, "session")
					if err != nil {
						t.Fatalf("Get: %v", err)
					}
					sess.Options.MaxAge = -1
					w := httptest.NewRecorder()
					if err := sess.Save(r, w); err != nil {
						t.Fatalf("Save MaxAge -1: %v", err)
					}
					if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
						t.Errorf("Save MaxAge -1: cookies %v, want the session cookie expired", cs)
					}
				}
				for i, s := range ss {
					got, err := topoLoad(store, s.cookie)
					if err != nil {
						t.Fatalf("load: %v", err)
					}
					gone := i < n/2
					if got.IsNew != gone {
						t.Errorf("session %d: IsNew %v, want %v", i, got.IsNew, gone)
					}
					if exists := rdb.Exists(ctx, store.Key(s.id)).Val(); exists != map[bool]int64{true: 0, false: 1}[gone] {
						t.Errorf("session %d: key exists %d after delete %v", i, exists, gone)
					}
				}
				ss = ss[n/2:]
			})

			if sentinel == nil {
				return
			}
			t.Run("failover", func(t *testing.T) {
				// What a failover keeps is what the replica has: wait until
				// it holds every live session.
				replica := redis.NewClient(&redis.Options{Addr: sentinel.Replica})
				defer replica.Close()
				var keys []string
				for _, s := range ss {
					keys = append(keys, store.Key(s.id))
				}
				deadline := time.Now().Add(10 * time.Second)
				for replica.Exists(ctx, keys...).Val() != int64(len(keys)) {
					if time.Now().After(deadline) {
						t.Fatal("sessions not replicated in 10s")
					}
					time.Sleep(20 * time.Millisecond)
				}
				sentinel.KillMaster()
				killed := time.Now()
				var unavailable, ok int
				for i := 0; ; i++ {
					s := ss[i%len(ss)]
					start := time.Now()
					got, err := topoLoad(store, s.cookie)
					took := time.Since(start)
					if took > redisstore.DefaultTimeout+time.Second {
						t.Errorf("load during the failover took %v", took)
					}
					switch {
					case err != nil:
						if !errors.Is(err, redisstore.ErrUnavailable) {
							t.Fatalf("load during the failover: %v, want ErrUnavailable", err)
						}
						unavailable++
					case got.IsNew:
						t.Fatalf("load during the failover: a new, empty session without error (a live session read as missing)")
					default:
						if !reflect.DeepEqual(got.Values, s.values) {
							t.Fatalf("values after the failover: got %v, want %v", got.Values, s.values)
						}
						ok++
					}
					if ok >= len(ss) {
						break
					}
					if time.Since(killed) > 30*time.Second {
						t.Fatalf("no failover in 30s (%d unavailable)", unavailable)
					}
					if err != nil {
						time.Sleep(20 * time.Millisecond)
					}
				}
				// The leader sentinel knows the new master at once, the
				// others within a hello period (2s); CurrentMaster asks
				// the first.
				for m, err := sentinel.CurrentMaster(ctx); err != nil || m != sentinel.Replica; m, err = sentinel.CurrentMaster(ctx) {
					if time.Since(killed) > 30*time.Second {
						t.Fatalf("master after the failover: %s (%v), want %s", m, err, sentinel.Replica)
					}
					time.Sleep(50 * time.Millisecond)
				}
				// The promoted replica takes writes.
				c, _ := saveID(t, store, map[any]any{"user_id": "after"})
				if got, err := topoLoad(store, c); err != nil || got.IsNew || got.Values["user_id"] != "after" {
					t.Errorf("session saved after the failover: IsNew %v, err %v", got.IsNew, err)
				}
				t.Logf("failover: %d loads unavailable, every session back after %v", unavailable, time.Since(killed).Round(time.Millisecond))
			})
		})
	}
}

// topoSpread checks that keys are on many slots and several masters, each
// found on exactly one master.
func topoSpread(t *testing.T, cc *redis.ClusterClient, keys []string) {
	ctx := context.Background()
	slots := map[int64]bool{}
	for _, k := range keys {
		slots[cc.ClusterKeySlot(ctx, k).Val()] = true
	}
	var mu sync.Mutex
	perMaster := map[string]int{}
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		for _, k := range keys {
			// EXISTS on the node itself: a key of another master is
			// simply not there.
			if m.Exists(ctx, k).Val() == 1 {
				mu.Lock()
				perMaster[m.Options().Addr]++
				mu.Unlock()
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	total := 0
	for _, c := range perMaster {
		total += c
	}
	if total != len(keys) || len(perMaster) < 2 || len(slots) < len(keys)/2 {
		t.Errorf("%d sessions on %d slots, per master %v: want each found once, on several masters", len(keys), len(slots), perMaster)
	}
	t.Logf("%d sessions on %d slots, per master %v", len(keys), len(slots), perMaster)
}

func topoStore(t *testing.T, c redis.UniversalClient) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(redisstore.Config{Client: c, KeyPairs: [][]byte{
		[]byte("topology-hash-key-topology-hash-"), []byte("topology-block-key-topology-bloc"),
	}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// topoLoad loads the session of a cookie (uncached, as on a new request).
func topoLoad(store *redisstore.Store, c *http.Cookie) (*sessions.Session, error) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	return store.New(r, "session")
}
