package webtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/internal/redistest"
)

// RedisCalls returns how many commands srv executed since start or the
// last CONFIG RESETSTAT, from INFO commandstats, leaving out the commands
// of the measurement itself (INFO, CONFIG, HELLO, CLIENT).
func RedisCalls(t testing.TB, srv *redistest.Server) map[string]int64 {
	t.Helper()
	c := redis.NewClient(srv.Options())
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, stats, _ := strings.Cut(rest, ":")
		if name == "info" || name == "hello" || strings.HasPrefix(name, "config") || strings.HasPrefix(name, "client") {
			continue
		}
		var n int64
		if _, err := fmt.Sscanf(stats, "calls=%d", &n); err == nil && n > 0 {
			calls[name] = n
		}
	}
	return calls
}

// ResetRedisStats runs CONFIG RESETSTAT on srv.
func ResetRedisStats(t testing.TB, srv *redistest.Server) {
	t.Helper()
	c := redis.NewClient(srv.Options())
	defer c.Close()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatalf("CONFIG RESETSTAT: %v", err)
	}
}
