package main

import (
	"context"
	"errors"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// waitHealthy polls base/healthz until it answers 200.
func waitHealthy(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("run returned %v before serving, want it serving", err)
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/healthz did not answer 200 within 10s", base)
}

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		redisURL func(t *testing.T) string
		wantLog  []string
	}{
		{
			name:     "embedded redis",
			redisURL: func(*testing.T) string { return "" },
			wantLog:  []string{"REDIS_URL is not set: using an embedded in-memory Redis", "REDIS_URL=redis://127.0.0.1:6379/0"},
		},
		{
			name:     "real redis",
			redisURL: func(t *testing.T) string { return redistest.New(t).URL() },
			wantLog:  []string{"using redis"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
			base := "http://" + addr
			env := map[string]string{"ADDR": addr, "REDIS_URL": tt.redisURL(t), "LOG_LEVEL": "debug"}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			logs := &syncbuf.Buffer{}
			done := make(chan error, 1)
			go func() { done <- run(ctx, envFunc(env), logs) }()
			waitHealthy(t, base, done)

			jar, err := cookiejar.New(nil)
			if err != nil {
				t.Fatalf("cookiejar.New: %v", err)
			}
			c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
			resp, err := c.PostForm(base+"/login", url.Values{"username": {"alice"}, "password": {"alice-password"}})
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			resp.Body.Close()
			// The redirect to /profile was followed with the new cookie.
			if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/profile" {
				t.Fatalf("login: got %d at %s, want 200 at /profile", resp.StatusCode, resp.Request.URL.Path)
			}
			u, _ := url.Parse(base)
			var cookie string
			for _, ck := range jar.Cookies(u) {
				if ck.Name == "session" {
					cookie = ck.Value
				}
			}
			if cookie == "" {
				t.Fatalf("got no session cookie, want one")
			}

			if u := env["REDIS_URL"]; u != "" {
				opt, err := redis.ParseURL(u)
				if err != nil {
					t.Fatalf("ParseURL: %v", err)
				}
				rdb := redis.NewClient(opt)
				keys, err := rdb.Keys(context.Background(), "session_*").Result()
				rdb.Close()
				if err != nil || len(keys) != 1 {
					t.Fatalf("got session keys %v (err %v) in REDIS_URL's server, want 1", keys, err)
				}
			}

			resp, err = c.Get(base + "/api/me")
			if err != nil {
				t.Fatalf("GET /api/me: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := `{"user_id":"1","username":"alice","roles":["user"],"auth_source":"session"}`
			if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
				t.Fatalf("GET /api/me: got %d %s, want 200 %s", resp.StatusCode, body, want)
			}

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run: got %v, want nil", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("run did not return within 15s of cancellation")
			}

			out := logs.String()
			for _, w := range append(tt.wantLog,
				"SESSION_HASH_KEY is not set",
				"url=http://"+addr+"/login",
				"alice / alice-password",
				"bob / bob-password",
				"route=/api/me status=200",
				"stopped",
			) {
				if !strings.Contains(out, w) {
					t.Errorf("got logs without %q, want it:\n%s", w, out)
				}
			}
			if strings.Contains(out, cookie) {
				t.Errorf("got logs containing the session cookie, want it never logged")
			}
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Errorf("got an answer after shutdown, want the listener closed")
			}
		})
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // substring of the error
	}{
		{"short hash key", map[string]string{"SESSION_HASH_KEY": "too-short"}, "SESSION_HASH_KEY has 9 bytes, want at least 32"},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, `LOG_LEVEL "loud"`},
		{"bad redis scheme", map[string]string{"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"},
		{"bad address", map[string]string{"ADDR": "127.0.0.1:notaport"}, "ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), envFunc(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRunHidesRedisPassword(t *testing.T) {
	err := run(context.Background(), envFunc(map[string]string{"REDIS_URL": "redis://user:s3cret-pw@127.0.0.1:port/0"}), io.Discard)
	if err == nil {
		t.Fatalf("got nil error, want one for the bad port")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("got error %q, want it without the password", err)
	}
}

func TestRunFailsWhenAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	err = run(context.Background(), envFunc(map[string]string{"ADDR": l.Addr().String()}), io.Discard)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("got error %v, want a *net.OpError", err)
	}
}

func TestBrowsable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "localhost:8080"},
		{"[::]:8080", "localhost:8080"},
		{"[::1]:8080", "[::1]:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.in)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			if got := browsable(addr); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
