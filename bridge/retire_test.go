package bridge_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/bridgetest"
	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

func TestRetireSessionsRefusedWithLegacyRoutes(t *testing.T) {
	key, _ := bridge.GenerateKey()
	src := bridge.StoreSource(sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef")), "session")
	tests := []struct {
		name string
		cfg  bridge.Config
		want string
	}{
		{"default legacy", bridge.Config{Routes: bridge.Routes{"/a": bridge.Dual}}, "DefaultMode is legacy"},
		{"a legacy route", bridge.Config{DefaultMode: bridge.Dual, Routes: bridge.Routes{"/a": bridge.Legacy}}, `route "/a" is legacy`},
		{"no sessions", bridge.Config{DefaultMode: bridge.Dual}, "needs Config.Sessions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SigningKey, cfg.Issuer, cfg.Audience, cfg.RetireSessions = key, "https://app", "app", true
			if tt.name != "no sessions" {
				cfg.Sessions, cfg.SIDKey = src, bridgetest.SIDKey
			}
			_, err := bridge.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestRetireSessions: a converted session is deleted and its cookie
// expired, through every kind of gorilla store (by ID, through a Save
// with MaxAge -1, a cookie store with nothing server-side), and the user
// stays logged in with the JWT.
func TestRetireSessions(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	for _, st := range sStores(t, srv.Client()) {
		t.Run(st.name, func(t *testing.T) {
			key, _ := bridge.GenerateKey()
			r := mux.NewRouter()
			r.HandleFunc("/api/me", func(w http.ResponseWriter, r *http.Request) {
				id, _ := bridge.IdentityFrom(r.Context())
				_, _ = w.Write([]byte(id.Source().String()))
			})
			b, err := bridge.New(bridge.Config{
				Sessions: bridge.StoreSource(st.store, "session"), SIDKey: bridgetest.SIDKey,
				SigningKey: key, Issuer: "https://app", Audience: "app",
				Router: r, DefaultMode: bridge.Dual, RetireSessions: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			r.Use(b.Middleware)

			legacy, id := bridgetest.SaveSession(t, st.store, map[any]any{"user_id": "1"})
			if st.key != nil {
				if n := srv.Client().Exists(ctx, st.key(id)).Val(); n != 1 {
					t.Fatalf("session key: got %d, want 1", n)
				}
			}

			req := httptest.NewRequest("GET", "/api/me", nil)
			req.AddCookie(legacy)
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != 200 || rec.Body.String() != "session" {
				t.Fatalf("conversion request: got %d %q, want 200 session", rec.Code, rec.Body.String())
			}
			var token *http.Cookie
			var expired bool
			for _, c := range rec.Result().Cookies() {
				switch c.Name {
				case bridge.DefaultCookieName:
					token = c
				case "session":
					expired = c.MaxAge < 0 && c.Path == "/"
				}
			}
			if token == nil || !expired {
				t.Fatalf("cookies: token %v, legacy cookie expired %v; want a token and the legacy cookie expired", token, expired)
			}
			if st.key != nil {
				if n := srv.Client().Exists(ctx, st.key(id)).Val(); n != 0 {
					t.Errorf("session key after retirement: got %d, want 0", n)
				}
			}
			// The user stays logged in with the JWT.
			req = httptest.NewRequest("GET", "/api/me", nil)
			req.AddCookie(token)
			rec = httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != 200 || rec.Body.String() != "jwt_cookie" {
				t.Errorf("after retirement: got %d %q, want 200 jwt_cookie", rec.Code, rec.Body.String())
			}
			var retired uint64
			for _, rc := range b.Snapshot() {
				retired += rc.Retired
			}
			if retired != 1 {
				t.Errorf("retired: got %d, want 1", retired)
			}
			if err := b.SetMode("/api/me", bridge.Legacy); err == nil {
				t.Errorf("SetMode legacy while retiring: got nil, want an error")
			}
		})
	}
}
