package fleet

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// TestSessionEndEndsTokens replays issue 13's first attack: bob converts,
// then his session key goes from Redis (an operator's DEL, its expiry);
// every JWT minted from it is refused on every instance within 2 s, with
// no Redis read added to the requests that carry it.
func TestSessionEndEndsTokens(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	// Flags an operator had set: kept, the fleet's added.
	if err := rdb.ConfigSet(context.Background(), "notify-keyspace-events", "Kl").Err(); err != nil {
		t.Fatal(err)
	}
	key := bridgetest.NewKey(t)
	a := ftNewNode(t, rdb, key, Config{})
	b := ftNewNode(t, rdb, key, Config{})
	for _, nd := range []*ftNode{a, b} {
		nd.f.sessionEventsEvery = 200 * time.Millisecond
		ftRun(t, nd.f)
	}
	bridgetest.Eventually(t, 3*time.Second, "both instances subscribed", func() bool {
		n, err := rdb.PubSubNumPat(context.Background()).Result()
		return err == nil && n >= 2
	})
	flags := rdb.ConfigGet(context.Background(), "notify-keyspace-events").Val()["notify-keyspace-events"]
	for _, fl := range "Kl" + "Egx" {
		if !strings.ContainsRune(flags, fl) {
			t.Errorf("notify-keyspace-events %q: want K and l kept, E, g and x (or A) added", flags)
			break
		}
	}

	// convert logs a user in on a, converts on /dual and checks that both
	// instances accept the token.
	convert := func(user string) (tok, id string) {
		t.Helper()
		ck, id := bridgetest.SaveSession(t, a.Store, bridgetest.User(user))
		r := bridgetest.Do(t, a.C, http.MethodGet, a.URL("/dual"), nil, ck)
		c := r.Cookie(a.B.Config().CookieName)
		if c == nil {
			t.Fatalf("user %s: not converted (%d)", user, r.StatusCode)
		}
		for _, nd := range []*ftNode{a, b} {
			if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL("/jwt"), bridgetest.Bearer(c.Value)); r.StatusCode != http.StatusOK {
				t.Fatalf("user %s: token refused before the session ended: %d", user, r.StatusCode)
			}
		}
		return c.Value, id
	}
	refusedEverywhere := func(tok string) func() bool {
		return func() bool {
			for _, nd := range []*ftNode{a, b} {
				if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL("/jwt"), bridgetest.Bearer(tok)); r.StatusCode != http.StatusUnauthorized {
					return false
				}
			}
			return true
		}
	}

	t.Run("operator DEL", func(t *testing.T) {
		tok, id := convert("2")
		other, _ := convert("3")
		if err := rdb.Del(context.Background(), a.Store.Key(id)).Err(); err != nil {
			t.Fatal(err)
		}
		d := bridgetest.Eventually(t, 2*time.Second, "token of a deleted session refused on both instances", refusedEverywhere(tok))
		t.Logf("refused on both instances %v after DEL", d)
		for _, nd := range []*ftNode{a, b} {
			if r := bridgetest.Do(t, nd.C, http.MethodGet, nd.URL("/jwt"), bridgetest.Bearer(other)); r.StatusCode != http.StatusOK {
				t.Errorf("another session's token refused: %d", r.StatusCode)
			}
		}
	})

	t.Run("expiry", func(t *testing.T) {
		tok, id := convert("4")
		if err := rdb.PExpire(context.Background(), a.Store.Key(id), 50*time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		d := bridgetest.Eventually(t, 2*time.Second, "token of an expired session refused on both instances", refusedEverywhere(tok))
		t.Logf("refused on both instances %v after PEXPIRE 50ms", d)
	})

	// A replica promoted by a failover has its own configuration, without
	// the flags: they are set again within the check period.
	t.Run("flags lost", func(t *testing.T) {
		if err := rdb.ConfigSet(context.Background(), "notify-keyspace-events", "").Err(); err != nil {
			t.Fatal(err)
		}
		tok, id := convert("7")
		bridgetest.Eventually(t, 2*time.Second, "flags set again", func() bool {
			return strings.ContainsRune(rdb.ConfigGet(context.Background(), "notify-keyspace-events").Val()["notify-keyspace-events"], 'x')
		})
		if err := rdb.Del(context.Background(), a.Store.Key(id)).Err(); err != nil {
			t.Fatal(err)
		}
		bridgetest.Eventually(t, 2*time.Second, "token of a deleted session refused on both instances", refusedEverywhere(tok))
		// Each check found the subscription in place: one connection per
		// instance subscribed to the three channels.
		list, err := rdb.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(list, " psub=3 "); n != 2 || strings.Count(list, " psub=0 ") != strings.Count(list, "\n")-2 {
			t.Errorf("pattern subscriptions after the checks: %d connections with psub=3, want 2 (one per instance):\n%s", n, list)
		}
	})

	t.Run("no Redis read on the JWT path", func(t *testing.T) {
		tok, _ := convert("5")
		before := b.Calls.N()
		for range 20 {
			bridgetest.Do(t, b.C, http.MethodGet, b.URL("/jwt"), bridgetest.Bearer(tok))
		}
		if n := b.Calls.N() - before; n != 0 {
			t.Errorf("Redis commands on the JWT path: %d, want 0", n)
		}
	})

	t.Run("other keys", func(t *testing.T) {
		tok, _ := convert("6")
		if err := rdb.Set(context.Background(), "cart_6", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		rdb.Del(context.Background(), "cart_6", "session_") // not a session, and an empty ID
		time.Sleep(200 * time.Millisecond)
		if r := bridgetest.Do(t, a.C, http.MethodGet, a.URL("/jwt"), bridgetest.Bearer(tok)); r.StatusCode != http.StatusOK {
			t.Errorf("a token refused after an unrelated key went: %d", r.StatusCode)
		}
	})
}

// TestSessionEndsNotWatched: NoSessionEvents leaves Redis's configuration
// and the tokens alone.
func TestSessionEndsNotWatched(t *testing.T) {
	srv := redistest.New(t)
	rdb := srv.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	nd := ftNewNode(t, rdb, nil, Config{SessionKeyPrefix: NoSessionEvents})
	ftRun(t, nd.f)
	time.Sleep(200 * time.Millisecond)
	if flags := rdb.ConfigGet(context.Background(), "notify-keyspace-events").Val()["notify-keyspace-events"]; flags != "" {
		t.Errorf("notify-keyspace-events %q, want untouched (empty)", flags)
	}
}
