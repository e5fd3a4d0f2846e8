package redisstore_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// FuzzLegacyCookie feeds arbitrary legacy cookie values to the session
// sources. Property: a value that does not verify is ErrSessionInvalid (or
// no credential when empty), decided before any Redis call — the Redis
// client here points at a closed port, so reaching it would be
// ErrStoreUnavailable — and nothing panics. (The bridge refuses a cookie
// over 4096 bytes before calling the source; the source is fuzzed on its
// own here, so a long value reaches securecookie, which refuses it.)
func FuzzLegacyCookie(f *testing.F) {
	hash := []byte("0123456789abcdef0123456789abcdef")
	sc := securecookie.New(hash, nil)
	good, _ := sc.Encode("session", "SESSIONID")
	f.Add(good)
	f.Add("")
	f.Add(strings.Repeat("A", 5000))
	f.Add("MTcwMDAwMDAwMHxmb3JnZWR8AAAA")
	f.Add(`"quoted"`)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 10 * time.Millisecond})
	f.Cleanup(func() { rdb.Close() })
	boj, err := redisstore.BojSource(rdb, "session", hash)
	if err != nil {
		f.Fatalf("BojSource: %v", err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", "session="+value)
		_, err := boj.Load(r)
		switch {
		case err == nil:
			t.Fatalf("cookie %q loaded a session from a closed Redis", value)
		case errors.Is(err, bridge.ErrNoSession), errors.Is(err, bridge.ErrSessionInvalid):
		case errors.Is(err, bridge.ErrStoreUnavailable):
			// Only a value that verifies under the key may reach Redis:
			// the value the source read, as net/http parses it.
			var id string
			c, cerr := r.Cookie("session")
			if cerr != nil || sc.Decode("session", c.Value, &id) != nil {
				t.Fatalf("cookie %q reached Redis without verifying", value)
			}
		default:
			t.Fatalf("cookie %q: unexpected error %v", value, err)
		}
	})
}
