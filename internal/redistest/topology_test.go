package redistest

import (
	"context"
	"github.com/redis/go-redis/v9"
	"sync/atomic"
	"testing"
	"time"
)

func TestCluster(t *testing.T) {
	c := NewCluster(t, 3)
	cl := c.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "{x}1", "{x}2"} {
		if err := cl.Set(ctx, k, "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	var n atomic.Int32 // ForEachMaster runs the callbacks concurrently
	err := cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n.Add(1)
		return nil
	})
	if err != nil || n.Load() != 3 {
		t.Errorf("masters: got %d (%v), want 3", n.Load(), err)
	}
}

func TestSentinelFailover(t *testing.T) {
	s := NewSentinel(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.KillMaster()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m, err := s.CurrentMaster(ctx); err == nil && m == s.Replica {
			if err := c.Set(ctx, "k2", "v", 0).Err(); err == nil {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no failover to the replica within 30s")
}
