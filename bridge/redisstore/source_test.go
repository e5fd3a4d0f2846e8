package redisstore_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// The read-only session sources (BojSource, RbcervillaSource, NewSource)
// on their own and behind a Bridge, through internal/bridgetest's
// RunSession*, which bridge/session_test.go runs on the app's own store
// through bridge.StoreSource.

// mSaveRbcervilla saves sessions in rbcervilla/redisstore's format under
// prefix ("" is its default).
func mSaveRbcervilla(prefix string) bridgetest.SaveFunc {
	return func(t *testing.T, e *bridgetest.Env, values map[any]any, ttl time.Duration) (*http.Cookie, string, string) {
		t.Helper()
		ck, id := bridgetest.SaveRbcervillaSession(t, e.RDB, prefix, values, ttl)
		e.Secret(ck.Value, id)
		return ck, id, (&bridgetest.RbcervillaStore{Prefix: prefix}).Key(id)
	}
}

// mRbcervillaCase reads rbcervilla/redisstore's sessions saved under
// prefix with RbcervillaSource(client, name, prefix).
func mRbcervillaCase(name, prefix string) bridgetest.SourceCase {
	return bridgetest.SourceCase{
		Name: name,
		New: func(_ *testing.T, e *bridgetest.Env) (bridge.SessionSource, error) {
			return redisstore.RbcervillaSource(e.RDB, bridgetest.SessionName, prefix)
		},
		Save:     mSaveRbcervilla(prefix),
		KnowsTTL: true,
		Unsigned: true,
	}
}

var (
	mBoj = bridgetest.SourceCase{
		Name: "boj",
		New: func(_ *testing.T, e *bridgetest.Env) (bridge.SessionSource, error) {
			return redisstore.BojSource(e.RDB, bridgetest.SessionName, bridgetest.KeyPairs()...)
		},
		Save:     bridgetest.SaveWith(nil),
		KnowsTTL: true,
	}
	mRedisJSON = bridgetest.SourceCase{
		Name: "redis json",
		New: func(_ *testing.T, e *bridgetest.Env) (bridge.SessionSource, error) {
			return redisstore.NewSource(redisstore.SourceConfig{Client: e.RDB, CookieName: bridgetest.SessionName, KeyPrefix: "session_",
				KeyPairs: bridgetest.KeyPairs(), Serializer: redisstore.JSONSerializer{}})
		},
		Save:     bridgetest.SaveWith(func(c *redisstore.Config) { c.Serializer = redisstore.JSONSerializer{} }),
		KnowsTTL: true,
	}
	mRedisPrefix = bridgetest.SourceCase{
		Name: "redis prefix",
		New: func(_ *testing.T, e *bridgetest.Env) (bridge.SessionSource, error) {
			return redisstore.NewSource(redisstore.SourceConfig{Client: e.RDB, CookieName: bridgetest.SessionName, KeyPrefix: "app:sess:",
				KeyPairs: bridgetest.KeyPairs()})
		},
		Save:     bridgetest.SaveWith(func(c *redisstore.Config) { c.KeyPrefix = "app:sess:" }),
		KnowsTTL: true,
	}
	mRbcervilla = mRbcervillaCase("rbcervilla", "")
	// The prefix rbcervilla/redisstore's README sets.
	mRbcervillaUnderscore = mRbcervillaCase("rbcervilla session_", "session_")
)

// mSID is the sid b puts in the tokens it mints from session id: the
// first 18 bytes of the ID's HMAC-SHA256 under b.Config().SIDKey,
// base64url (the bridge's sidHash, which package bridge_test reaches
// through bridge.SIDOf; this package cannot).
func mSID(b *bridge.Bridge, id string) string {
	m := hmac.New(sha256.New, b.Config().SIDKey)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// TestSessionSources: each source loads the session with its remaining
// TTL, decodes its format (gob or JSON, any key prefix), never writes to
// Redis, bounds the converted token by the TTL, and deletes the session.
func TestSessionSources(t *testing.T) {
	bridgetest.RunSessionSources(t, mSID, mBoj, mRedisJSON, mRedisPrefix, mRbcervilla, mRbcervillaUnderscore)
}

// TestSessionCookieFaults: legacy cookies that fail verification or name
// no session are refused (401 where auth is needed) and never converted;
// a cookie signed with a previous key pair still loads (key rotation).
func TestSessionCookieFaults(t *testing.T) {
	bridgetest.RunSessionCookieFaults(t, mBoj, mRbcervilla, mRbcervillaUnderscore)
}

// TestSessionUndecodable: stored values that cannot be decoded answer 500
// on dual with session_undecodable, and the logs name the missing type
// and the gob.Register call that compiles: &T{} for a pointer type.
func TestSessionUndecodable(t *testing.T) {
	bridgetest.RunSessionUndecodable(t,
		bridgetest.UndecodableCase{Source: mBoj, Data: bridgetest.Unregistered(true), WantLogs: []string{bridgetest.GhostPointerCall, "*bridgetest.ghostUserZ"}},
		bridgetest.UndecodableCase{Source: mBoj, Data: bridgetest.Unregistered(false), WantLogs: []string{bridgetest.GhostValueCall, "bridgetest.ghostCartZ"}},
		bridgetest.UndecodableCase{Source: mRbcervilla, Data: bridgetest.Unregistered(true), WantLogs: []string{bridgetest.GhostPointerCall}},
		bridgetest.UndecodableCase{Source: mRedisJSON, Data: func(*testing.T) []byte { return []byte("{not json") },
			WantLogs: []string{"JSON decode"}},
	)
}

// TestRbcervillaWrongPrefix: a source whose key prefix is not the app's
// (rbcervilla/redisstore's default "session:" for an app that followed
// its README's "session_") finds no session: each is session_unknown (401
// on dual, counted), and the error, in the log, names the prefix looked
// up and never the session's ID. With the app's prefix the same cookie
// converts.
func TestRbcervillaWrongPrefix(t *testing.T) {
	srv := redistest.New(t)
	tests := []struct {
		name, prefix string
		status       int
	}{
		{name: "default prefix", prefix: "", status: http.StatusUnauthorized},
		{name: "the app's prefix", prefix: "session_", status: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, src := bridgetest.EnvWithSource(t, srv, mRbcervillaCase(tt.name, tt.prefix))
			ck, id, _ := mSaveRbcervilla("session_")(t, e, bridgetest.User("1"), 10*time.Minute)

			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.AddCookie(ck)
			_, err := src.Load(r)
			resp := bridgetest.Do(t, e.TS.Client(), http.MethodGet, e.URL("/dual"), nil, ck)
			if resp.StatusCode != tt.status {
				t.Fatalf("dual: got %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == http.StatusOK {
				if err != nil || resp.Cookie(bridge.DefaultCookieName) == nil {
					t.Errorf("the app's prefix: Load %v, converted %v; want the session converted", err, resp.Cookie(bridge.DefaultCookieName) != nil)
				}
				return
			}
			want := `no Redis key "session:"+ID`
			if !errors.Is(err, bridge.ErrSessionNotFound) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), id) {
				t.Errorf("Load: got %v, want ErrSessionNotFound naming %s and not the ID", err, want)
			}
			if got := resp.Reason(); got != bridge.ReasonSessionUnknown.String() {
				t.Errorf("reason: got %q, want %s", got, bridge.ReasonSessionUnknown)
			}
			bridgetest.WantReasons(t, e.B, "/dual", map[bridge.Reason]uint64{bridge.ReasonSessionUnknown: 1})
			if logs := e.Logs.String(); !strings.Contains(logs, "session_unknown") || !strings.Contains(logs, strings.ReplaceAll(want, `"`, `\"`)) {
				t.Errorf("logs lack session_unknown and %s:\n%s", want, logs)
			}
		})
	}
}

// TestSourceConfigErrors: the constructors name what is missing.
func TestSourceConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  redisstore.SourceConfig
		want string
	}{
		{name: "no client", cfg: redisstore.SourceConfig{CookieName: "s"}, want: "Client"},
		{name: "no cookie", cfg: redisstore.SourceConfig{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})}, want: "CookieName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.NewSource(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
