package redisstore_test

import (
	"context"
	"encoding/gob"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/boj/redistore"
	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

var (
	hashKey  = []byte("0123456789abcdef0123456789abcdef")
	blockKey = []byte("fedcba9876543210fedcba9876543210")
	oldHash  = []byte("old-hash-key-old-hash-key-old-ha")
)

func newStore(t *testing.T, c redis.UniversalClient, mod func(*redisstore.Config)) *redisstore.Store {
	t.Helper()
	cfg := redisstore.Config{Client: c, KeyPairs: [][]byte{hashKey, nil}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := redisstore.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// save stores values under a new session with store and returns the cookie.
func save(t *testing.T, store sessions.Store, values map[any]any) *http.Cookie {
	t.Helper()
	c, _ := saveID(t, store, values)
	return c
}

// saveID is save that also returns the new session's ID.
func saveID(t *testing.T, store sessions.Store, values map[any]any) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	s, err := store.New(r, "session")
	if err != nil {
		t.Fatalf("New session: %v", err)
	}
	for k, v := range values {
		s.Values[k] = v
	}
	if err := s.Save(r, w); err != nil {
		t.Fatalf("Save: %v", err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("got %d cookies, want 1", len(cookies))
	}
	return cookies[0], s.ID
}

func load(store sessions.Store, c *http.Cookie) (*sessions.Session, error) {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	return store.New(r, "session")
}

func TestBojRoundTrip(t *testing.T) {
	srv := redistest.New(t)
	ours := newStore(t, srv.Client(), nil)
	boj, err := redistore.NewRediStoreWithURL(4, srv.URL(), hashKey, nil)
	if err != nil {
		t.Fatalf("boj store: %v", err)
	}
	t.Cleanup(func() { boj.Close() })
	values := map[any]any{"user_id": "1", "username": "alice", "roles": []string{"user", "admin"}}

	tests := []struct {
		name        string
		write, read sessions.Store
	}{
		{"boj to ours", boj, ours},
		{"ours to boj", ours, boj},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := save(t, tt.write, values)
			s, err := load(tt.read, c)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if s.IsNew {
				t.Fatalf("got a new session, want the saved one")
			}
			if got, want := s.Values["username"], "alice"; got != want {
				t.Errorf("username: got %v, want %v", got, want)
			}
			if got := s.Values["roles"].([]string); len(got) != 2 || got[1] != "admin" {
				t.Errorf("roles: got %v, want [user admin]", got)
			}
			keys, err := srv.Client().Keys(context.Background(), "session_"+s.ID).Result()
			if err != nil || len(keys) != 1 {
				t.Errorf("redis key session_<ID>: got %v (%v), want one key", keys, err)
			}
		})
	}
}

func TestBojJSONSerializerRoundTrip(t *testing.T) {
	srv := redistest.New(t)
	ours := newStore(t, srv.Client(), func(c *redisstore.Config) { c.Serializer = redisstore.JSONSerializer{} })
	boj, err := redistore.NewRediStoreWithURL(4, srv.URL(), hashKey, nil)
	if err != nil {
		t.Fatalf("boj store: %v", err)
	}
	t.Cleanup(func() { boj.Close() })
	boj.SetSerializer(redistore.JSONSerializer{})

	c := save(t, boj, map[any]any{"user_id": "2", "n": 3})
	s, err := load(ours, c)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if got, want := s.Values["user_id"], "2"; got != want {
		t.Errorf("user_id: got %v, want %v", got, want)
	}
	if got, want := s.Values["n"], float64(3); got != want {
		t.Errorf("n: got %v, want %v", got, want)
	}
	c = save(t, ours, map[any]any{"user_id": "3"})
	s, err = load(boj, c)
	if err != nil || s.Values["user_id"] != "3" {
		t.Errorf("boj load of ours: got %v, %v, want user_id 3", s.Values, err)
	}
}

func TestKeyRotation(t *testing.T) {
	srv := redistest.New(t)
	before := newStore(t, srv.Client(), func(c *redisstore.Config) { c.KeyPairs = [][]byte{oldHash, nil} })
	after := newStore(t, srv.Client(), func(c *redisstore.Config) { c.KeyPairs = [][]byte{hashKey, blockKey, oldHash, nil} })
	unrelated := newStore(t, srv.Client(), func(c *redisstore.Config) { c.KeyPairs = [][]byte{hashKey, nil} })

	c := save(t, before, map[any]any{"user_id": "1"})
	s, err := load(after, c)
	if err != nil || s.IsNew || s.Values["user_id"] != "1" {
		t.Fatalf("cookie under the previous key: got %v, new=%v, err=%v; want the session", s.Values, s.IsNew, err)
	}
	if _, err := load(unrelated, c); err == nil {
		t.Errorf("cookie under an unknown key: got no error, want a decode error")
	}
	// New cookies use the first (current) pair: the old store cannot read them.
	c = save(t, after, map[any]any{"user_id": "2"})
	if _, err := load(before, c); err == nil {
		t.Errorf("old store read a cookie of the new key: want a decode error")
	}
}

type unregistered struct{ A int }

type (
	storeUserA struct{ ID string }
	storeCartA struct{ Items []string }
	namedA     struct{ B string }
)

// TestUnregisteredGobType: a session value of a type gob does not know
// fails with ErrUnregisteredType, naming the type and a gob.Register call
// that compiles: &T{} for a pointer type, T{} for a value type. Decoding
// is tested on values registered by the writer but not by the reader:
// written under a registered type, whose name is then replaced in the
// stored bytes with one of the same length nobody registered.
func TestUnregisteredGobType(t *testing.T) {
	srv := redistest.New(t)
	store := newStore(t, srv.Client(), nil)
	gob.Register(&storeUserA{})
	gob.Register(storeCartA{})
	gob.RegisterName("sessionbridge.test.namedA", namedA{})
	ctx := context.Background()

	tests := []struct {
		name     string
		value    any
		from, to string // rename the type in the stored bytes; "" to save an unregistered value
		want     string
	}{
		{name: "encode pointer", value: &unregistered{A: 1}, want: "gob.Register(&redisstore_test.unregistered{})"},
		{name: "encode value", value: unregistered{A: 1}, want: "gob.Register(redisstore_test.unregistered{})"},
		{name: "decode pointer", value: &storeUserA{ID: "1"}, from: "storeUserA", to: "storeUserZ",
			want: "gob.Register(&redisstore_test.storeUserZ{})"},
		{name: "decode value", value: storeCartA{Items: []string{"book"}}, from: "storeCartA", to: "storeCartZ",
			want: "gob.Register(redisstore_test.storeCartZ{})"},
		{name: "decode RegisterName", value: namedA{B: "b"}, from: "sessionbridge.test.namedA", to: "sessionbridge.test.namedZ",
			want: `gob.RegisterName("sessionbridge.test.namedZ", <a value of the type>)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.from == "" {
				r := httptest.NewRequest("GET", "/", nil)
				s, _ := store.New(r, "session")
				s.Values["x"] = tt.value
				err = s.Save(r, httptest.NewRecorder())
			} else {
				c, id := saveID(t, store, map[any]any{"x": tt.value})
				raw := srv.Client().Get(ctx, store.Key(id)).Val()
				srv.Client().Set(ctx, store.Key(id), strings.ReplaceAll(raw, tt.from, tt.to), time.Hour)
				_, err = load(store, c)
			}
			if !errors.Is(err, redisstore.ErrUnregisteredType) || !errors.Is(err, bridge.ErrSessionUndecodable) {
				t.Fatalf("got %v, want ErrUnregisteredType and ErrSessionUndecodable", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the call %s", err, tt.want)
			}
		})
	}
}

func TestUnavailableVersusMissing(t *testing.T) {
	srv := redistest.New(t)
	store := newStore(t, srv.Client(), nil)
	c := save(t, store, map[any]any{"user_id": "1"})

	// Missing key: a new, empty session and no error.
	srv.Client().FlushAll(context.Background())
	s, err := load(store, c)
	if err != nil || !s.IsNew || len(s.Values) != 0 {
		t.Fatalf("missing session: got new=%v values=%v err=%v, want a new empty session", s.IsNew, s.Values, err)
	}

	tests := []struct {
		name  string
		fault func() redis.UniversalClient
	}{
		{"refused", func() redis.UniversalClient {
			o := srv.Options()
			o.Addr = "127.0.0.1:1"
			return redis.NewClient(o)
		}},
		{"hangs", func() redis.UniversalClient {
			o := srv.Options()
			o.Addr = redistest.Blackhole(t)
			return redis.NewClient(o)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := tt.fault()
			defer client.Close()
			down := newStore(t, client, func(c *redisstore.Config) { c.Timeout = 200 * time.Millisecond })
			start := time.Now()
			_, err := load(down, c)
			if !errors.Is(err, redisstore.ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, want within the deadline", d)
			}
		})
	}
}

func TestMaxAge(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	store := newStore(t, srv.Client(), nil)

	tests := []struct {
		name       string
		maxAge     int
		wantKey    bool
		wantTTL    time.Duration
		wantCookie int // cookie MaxAge; the value is emptied when deleted
	}{
		{"positive keeps key with TTL", 3600, true, time.Hour, 3600},
		// boj/redistore deletes on MaxAge 0 too and sends an empty
		// browser-session cookie.
		{"zero deletes (boj)", 0, false, 0, 0},
		{"negative deletes and expires the cookie", -1, false, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := save(t, store, map[any]any{"user_id": "1"})
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(c)
			s, err := store.New(r, "session")
			if err != nil || s.IsNew {
				t.Fatalf("load: new=%v err=%v", s.IsNew, err)
			}
			s.Options.MaxAge = tt.maxAge
			w := httptest.NewRecorder()
			if err := s.Save(r, w); err != nil {
				t.Fatalf("Save: %v", err)
			}
			ttl := srv.Client().TTL(ctx, store.Key(s.ID)).Val()
			if tt.wantKey && (ttl <= 0 || ttl > tt.wantTTL) {
				t.Errorf("TTL: got %v, want (0, %v]", ttl, tt.wantTTL)
			}
			if !tt.wantKey && ttl != -2*time.Nanosecond {
				t.Errorf("key still present with TTL %v, want deleted", ttl)
			}
			got := w.Result().Cookies()[0]
			if got.MaxAge != tt.wantCookie {
				t.Errorf("cookie MaxAge: got %d, want %d", got.MaxAge, tt.wantCookie)
			}
			if !tt.wantKey && got.Value != "" {
				t.Errorf("cookie value: got %q, want empty", got.Value)
			}
		})
	}
}

func TestMaxLength(t *testing.T) {
	srv := redistest.New(t)
	store := newStore(t, srv.Client(), nil)
	r := httptest.NewRequest("GET", "/", nil)
	s, _ := store.New(r, "session")
	s.Values["big"] = strings.Repeat("x", 5000)
	if err := s.Save(r, httptest.NewRecorder()); !errors.Is(err, redisstore.ErrTooLarge) {
		t.Errorf("got %v, want ErrTooLarge", err)
	}
	unlimited := newStore(t, srv.Client(), func(c *redisstore.Config) { c.MaxLength = -1 })
	s, _ = unlimited.New(r, "session")
	s.Values["big"] = strings.Repeat("x", 5000)
	if err := s.Save(r, httptest.NewRecorder()); err != nil {
		t.Errorf("MaxLength -1: got %v, want no error", err)
	}
}

func TestSessionID(t *testing.T) {
	id := redisstore.NewID()
	if len(id) != 52 || strings.ContainsAny(id, "=") {
		t.Errorf("got %q (%d chars), want 52 unpadded base32 characters", id, len(id))
	}
	if id == redisstore.NewID() {
		t.Errorf("two IDs are equal")
	}
}

func TestConfigValidation(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name string
		cfg  redisstore.Config
		want string
	}{
		{"no client", redisstore.Config{KeyPairs: [][]byte{hashKey}}, "Config.Client"},
		{"no keys", redisstore.Config{Client: c}, "Config.KeyPairs"},
		{"short key", redisstore.Config{Client: c, KeyPairs: [][]byte{[]byte("short")}}, "Config.KeyPairs[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisstore.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if _, err := redisstore.New(redisstore.Config{Client: c, KeyPairs: [][]byte{securecookie.GenerateRandomKey(64)}}); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
