package fleet

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// CountSessions counts the legacy sessions left in Redis: the keys that
// start with keyPrefix ("session_" for boj/redistore and bridge/redisstore,
// "session:" for rbcervilla/redisstore). It walks the keyspace with SCAN,
// never KEYS, so it does not block Redis; on a Redis Cluster it walks every
// master.
func (f *Fleet) CountSessions(ctx context.Context, keyPrefix string) (int64, error) {
	if keyPrefix == "" {
		return 0, fmt.Errorf("fleet: CountSessions: empty key prefix would count every key")
	}
	match := escapeGlob(keyPrefix) + "*"
	count := func(ctx context.Context, c redis.Cmdable) (int64, error) {
		var n int64
		iter := c.Scan(ctx, 0, match, 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		return n, iter.Err()
	}
	if cc, ok := f.cfg.Redis.(*redis.ClusterClient); ok {
		// ForEachMaster runs fn on every master at once: sum atomically
		// (a buffered channel drained afterwards would block the callbacks
		// of a cluster with more masters than its capacity, and with them
		// ForEachMaster).
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := count(ctx, m)
			total.Add(n)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("fleet: count sessions: %w", err)
		}
		return total.Load(), nil
	}
	n, err := count(ctx, f.cfg.Redis)
	if err != nil {
		return 0, fmt.Errorf("fleet: count sessions: %w", err)
	}
	return n, nil
}

// escapeGlob escapes the characters SCAN MATCH treats as patterns.
func escapeGlob(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
