package bridgetest

import (
	"bytes"
	"context"
	"encoding/gob"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/securecookie"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// Tamper changes one character in the middle of a cookie value.
func Tamper(v string) string {
	i := len(v) / 2
	ch := byte('A')
	if v[i] == 'A' {
		ch = 'B'
	}
	return v[:i] + string(ch) + v[i+1:]
}

// ExpiredToken is a token of e's key for "1" that expired 5 minutes ago,
// recorded as a secret.
func ExpiredToken(t testing.TB, e *Env) string {
	t.Helper()
	now := e.Clock.Now()
	return e.Token(t, "1", func(c *bridge.Claims) {
		c.IssuedAt = jwt.NewNumericDate(now.Add(-20 * time.Minute))
		c.NotBefore = c.IssuedAt
		c.ExpiresAt = jwt.NewNumericDate(now.Add(-5 * time.Minute))
	})
}

// RunSessionCookieFaults checks that legacy cookies that fail
// verification or name no session are refused (401 where auth is needed)
// and never converted, and that a cookie signed with a previous key pair
// still loads (key rotation); the cases about signatures are left out for
// an Unsigned source.
func RunSessionCookieFaults(t *testing.T, cases ...SourceCase) {
	srv := redistest.New(t)
	signed := func(keyPairs ...[]byte) func(t *testing.T, id string) string {
		return func(t *testing.T, id string) string {
			v, err := securecookie.EncodeMulti(SessionName, id, securecookie.CodecsFromPairs(keyPairs...)...)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			return v
		}
	}
	tests := []struct {
		name string
		// value returns the cookie value for the live session id (the
		// session's own cookie value is ck).
		value  func(t *testing.T, id, ck string) string
		raw    bool // send the value as a raw Cookie header
		delete bool // delete the session's key first
		jwt    bool // also send an expired JWT cookie
		signed bool // only for sources with signed cookies
		status int
		reason bridge.Reason
	}{
		{name: "valid", value: func(_ *testing.T, _, ck string) string { return ck }, status: 200},
		{name: "bad MAC", signed: true, value: func(_ *testing.T, _, ck string) string { return Tamper(ck) },
			status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "unknown key", signed: true, value: func(t *testing.T, id, _ string) string {
			return signed(UnknownHashKey, nil)(t, id)
		}, status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "previous key", signed: true, value: func(t *testing.T, id, _ string) string {
			return signed(OldHashKey, nil)(t, id)
		}, status: 200},
		{name: "over 4096 bytes", value: func(_ *testing.T, _, ck string) string {
			return ck + strings.Repeat("A", 4097-len(ck))
		}, status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "unparsable", raw: true, value: func(_ *testing.T, _, ck string) string { return ck[:4] + `\` + ck[4:] },
			status: 401, reason: bridge.ReasonSessionInvalid},
		{name: "key gone", delete: true, jwt: true, value: func(_ *testing.T, _, ck string) string { return ck },
			status: 401, reason: bridge.ReasonSessionUnknown},
		{name: "unknown id", value: func(t *testing.T, id, ck string) string {
			if ck == id { // an unsigned cookie: the raw ID
				return redisstore.NewID()
			}
			return signed(HashKey, BlockKey)(t, redisstore.NewID())
		}, status: 401, reason: bridge.ReasonSessionUnknown},
	}
	for _, sc := range cases {
		for _, tt := range tests {
			if tt.signed && sc.Unsigned {
				continue
			}
			t.Run(sc.Name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				e, _ := EnvWithSource(t, srv, sc)
				ck, id, key := sc.Save(t, e, User("1"), 10*time.Minute)
				if tt.delete {
					if err := e.RDB.Del(context.Background(), key).Err(); err != nil {
						t.Fatal(err)
					}
				}
				v := tt.value(t, id, ck.Value)
				e.Secret(v)
				hdr := http.Header{}
				var cookies []*http.Cookie
				if tt.raw {
					hdr.Set("Cookie", SessionName+"="+v)
				} else {
					cookies = append(cookies, &http.Cookie{Name: SessionName, Value: v})
				}
				if tt.jwt {
					cookies = append(cookies, e.JWTCookie(ExpiredToken(t, e)))
				}

				for _, route := range []string{"/legacy", "/dual"} {
					resp := Do(t, e.TS.Client(), http.MethodGet, e.URL(route), hdr, cookies...)
					status := tt.status
					if route == "/legacy" {
						status = 200
					}
					if resp.StatusCode != status {
						t.Errorf("%s: status: got %v, want %v (%s)", route, resp.StatusCode, status, resp.Body)
						continue
					}
					var set []*http.Cookie
					for _, c := range resp.Cookies() {
						e.Secret(c.Value)
						if c.Name == bridge.DefaultCookieName {
							set = append(set, c)
						}
					}
					switch {
					case route == "/legacy":
						if len(resp.Cookies()) != 0 {
							t.Errorf("%s: Set-Cookie: got %v, want none", route, CookiesDesc(resp.Cookies()...))
						}
					case tt.status == 200:
						if len(set) != 1 || set[0].MaxAge <= 0 {
							t.Errorf("%s: id_token: got %v, want a minted cookie", route, CookiesDesc(set...))
						}
					case tt.jwt:
						if len(set) != 1 || set[0].MaxAge >= 0 {
							t.Errorf("%s: id_token: got %v, want one clearing Set-Cookie", route, CookiesDesc(set...))
						}
					default:
						if len(resp.Cookies()) != 0 {
							t.Errorf("%s: Set-Cookie: got %v, want none", route, CookiesDesc(resp.Cookies()...))
						}
					}
					if resp.StatusCode == 401 {
						if got := resp.Reason(); got != tt.reason.String() {
							t.Errorf("%s: reason: got %q, want %q", route, got, tt.reason)
						}
					}
					mode := Routes[route]
					source := bridge.SourceSession
					reasons := map[bridge.Reason]uint64{}
					if tt.status != 200 {
						source = bridge.SourceRejected
						reasons[tt.reason] = 1
					}
					if tt.jwt {
						reasons[bridge.ReasonCookieExpired] = 1
					}
					WantRequests(t, e.B, route, map[bridge.Mode]map[bridge.Source]uint64{mode: {source: 1}})
					WantReasons(t, e.B, route, reasons)
				}
				// The session (when it was there) is left alone.
				if !tt.delete {
					if n, _ := e.RDB.Exists(context.Background(), key).Result(); n != 1 {
						t.Errorf("session key: got %v, want it kept", n)
					}
				}
			})
		}
	}
}

// ghostUserA and ghostCartA are gob-encoded under the names gob.Register
// gives them ("*bridgetest.ghostUserA" for the pointer, the import path
// and "ghostCartA" for the value), which are then changed in the bytes
// (A to Z): session values of types nobody registered.
type (
	ghostUserA struct{ ID string }
	ghostCartA struct{ Items []string }
)

var registerGhosts sync.Once

// The calls that the errors about UnregisteredGob's values must name:
// they compile (given the types), unlike gob.Register(*bridgetest.ghostUserZ{}).
const (
	GhostPointerCall = "gob.Register(&bridgetest.ghostUserZ{})"
	GhostValueCall   = "gob.Register(bridgetest.ghostCartZ{})"
)

// UnregisteredGob returns gob of values plus a value of a type nobody
// registered: *ghostUserZ under "user" when pointer, else ghostCartZ under
// "cart" (GhostPointerCall and GhostValueCall register them).
func UnregisteredGob(t testing.TB, values map[any]any, pointer bool) []byte {
	t.Helper()
	registerGhosts.Do(func() {
		gob.Register(&ghostUserA{})
		gob.Register(ghostCartA{})
	})
	from, to := "ghostCartA", "ghostCartZ"
	if pointer {
		values["user"] = &ghostUserA{ID: "1"}
		from, to = "ghostUserA", "ghostUserZ"
	} else {
		values["cart"] = ghostCartA{Items: []string{"book"}}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		t.Fatalf("gob: %v", err)
	}
	return bytes.ReplaceAll(buf.Bytes(), []byte(from), []byte(to))
}

// Unregistered is an UndecodableCase's Data: User("1") with a value of a
// type nobody registered (UnregisteredGob).
func Unregistered(pointer bool) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return UnregisteredGob(t, User("1"), pointer) }
}

// UndecodableCase is a session of Source whose stored value is replaced
// by Data, and what the logs must say about it.
type UndecodableCase struct {
	Source   SourceCase
	Data     func(t *testing.T) []byte
	WantLogs []string
}

// RunSessionUndecodable checks that stored values that cannot be decoded
// answer 500 on dual with session_undecodable, that the logs name what
// is wrong (the missing type), and that the session is kept.
func RunSessionUndecodable(t *testing.T, cases ...UndecodableCase) {
	srv := redistest.New(t)
	for _, tt := range cases {
		name := tt.Source.Name + "/" + strings.ReplaceAll(tt.WantLogs[0], " ", "_")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, _ := EnvWithSource(t, srv, tt.Source)
			ck, _, key := tt.Source.Save(t, e, User("1"), 10*time.Minute)
			if err := e.RDB.Set(context.Background(), key, tt.Data(t), 10*time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			routes := []struct {
				route  string
				status int
				source bridge.Source
				reason bridge.Reason
			}{
				{"/dual", 500, bridge.SourceRejected, bridge.ReasonSessionUndecodable},
				{"/legacy", 200, bridge.SourceRejected, bridge.ReasonSessionUndecodable},
				{"/jwt", 401, bridge.SourceRejected, bridge.ReasonSessionOnJWT},
			}
			for _, r := range routes {
				resp := Do(t, e.TS.Client(), http.MethodGet, e.URL(r.route), nil, ck)
				if resp.StatusCode != r.status {
					t.Errorf("%s: status: got %v, want %v (%s)", r.route, resp.StatusCode, r.status, resp.Body)
				}
				if r.status != 200 {
					if got := resp.Reason(); got != r.reason.String() {
						t.Errorf("%s: reason: got %q, want %q", r.route, got, r.reason)
					}
				}
				if c := resp.Cookie(bridge.DefaultCookieName); c != nil {
					t.Errorf("%s: id_token set: %v", r.route, c)
				}
				WantRequests(t, e.B, r.route, map[bridge.Mode]map[bridge.Source]uint64{Routes[r.route]: {r.source: 1}})
				WantReasons(t, e.B, r.route, map[bridge.Reason]uint64{r.reason: 1})
			}
			logs := e.Logs.String()
			for _, want := range tt.WantLogs {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if n, _ := e.RDB.Exists(context.Background(), key).Result(); n != 1 {
				t.Errorf("session key: got %v, want it kept", n)
			}
		})
	}
}
