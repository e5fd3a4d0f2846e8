package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// fill writes n keys with the given prefix, plus unrelated keys.
func fill(t *testing.T, c redis.Cmdable, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if err := c.Set(ctx, fmt.Sprintf("%s%04d", prefix, i), "v", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"sessionbridge_x", "{sessionbridge}:seq", "other"} {
		c.Set(ctx, k, "v", time.Hour)
	}
}

func TestSessionsCount(t *testing.T) {
	srv := redistest.New(t)
	fill(t, srv.Client(), "session_", 1234)
	fill(t, srv.Client(), "session:", 7)

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sessions", "count", "--redis", srv.URL()}, "1234 legacy sessions"},
		{[]string{"sessions", "count", "--redis", srv.URL(), "--prefix", "session:"}, "7 legacy sessions"},
		{[]string{"sessions", "count", "--redis", srv.URL(), "--prefix", "nothing*here"}, "0 legacy sessions"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[3:], " "), func(t *testing.T) {
			out := mustRun(t, tt.args...)
			if !strings.Contains(out, tt.want) {
				t.Errorf("got %q, want %q", out, tt.want)
			}
		})
	}
	if calls := srv.CommandCalls("keys"); calls != 0 {
		t.Errorf("KEYS called %d times, want 0 (SCAN only)", calls)
	}
	if r := bridgectl(t, nil, "sessions", "count", "--redis", srv.URL(), "--prefix", ""); r.code != exitUsage {
		t.Errorf("empty prefix: exit %d, want %d", r.code, exitUsage)
	}
	if r := bridgectl(t, nil, "sessions", "count", "--redis", "redis://127.0.0.1:1/0"); r.code != exitRuntime {
		t.Errorf("redis down: exit %d, want %d", r.code, exitRuntime)
	}
}

func TestSessionsCountCluster(t *testing.T) {
	c := redistest.NewCluster(t, 3)
	fill(t, c.Client(t), "session_", 300)
	out := mustRun(t, "sessions", "count", "--redis", c.URL())
	if !strings.Contains(out, "300 legacy sessions") {
		t.Errorf("got %q, want 300 across the masters", out)
	}
}
