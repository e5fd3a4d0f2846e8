package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// A session's end ends its tokens. Redis announces every deletion and
// expiry of a key through keyspace notifications (keyevent channels); each
// instance listens on every master and denies, locally, the sid of every
// session key that goes, whatever removed it: the app's logout, an
// operator's DEL, expiry, eviction. No message crosses the fleet and no
// request reads Redis for it: the JWT path stays as it was.

// sessionEventFlags are the notify-keyspace-events flags the fleet needs:
// keyevent channels (E) for generic commands such as DEL and UNLINK (g),
// expiry (x) and eviction (e).
const sessionEventFlags = "Egxe"

// sessionEventChannels are the keyevent channels of a session key's end,
// in every database.
var sessionEventChannels = []string{"__keyevent@*__:del", "__keyevent@*__:expired", "__keyevent@*__:evicted"}

// watchSessionEnds denies the sid of every session key (Config.SessionKeyPrefix)
// Redis deletes, expires or evicts, until ctx ends. It enables the
// keyspace notifications it needs where Redis lets it; where it cannot (a
// managed Redis that forbids CONFIG) it says so once, loudly: tokens then
// live until their exp, which never passes the session's remaining life
// where the session source can tell it.
func (f *Fleet) watchSessionEnds(ctx context.Context, b *bridge.Bridge) {
	ttl := b.Config().TokenTTL + b.Config().Leeway
	end := func(key string) {
		id, ok := strings.CutPrefix(key, f.cfg.SessionKeyPrefix)
		if !ok || id == "" {
			return
		}
		b.Deny(bridge.Revocation{Session: id, Until: f.now().Add(ttl)})
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	err := f.eachMaster(ctx, func(ctx context.Context, c redis.UniversalClient) error {
		if err := enableSessionEvents(ctx, c, f.cfg.FlushTimeout); err != nil {
			f.log().LogAttrs(ctx, slog.LevelError, "fleet: Redis keyspace notifications are off and cannot be turned on: "+
				"a session deleted or expired in Redis does not end its tokens before their exp (set notify-keyspace-events to include "+sessionEventFlags+")",
				slog.String("error", err.Error()))
		}
		sub := c.PSubscribe(ctx, sessionEventChannels...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sub.Close()
			msgs := sub.Channel()
			for {
				select {
				case <-ctx.Done():
					return
				case m, ok := <-msgs:
					if !ok {
						return
					}
					end(m.Payload)
				}
			}
		}()
		return nil
	})
	if err != nil {
		f.log().LogAttrs(ctx, slog.LevelWarn, "fleet: session ends not watched", slog.String("error", err.Error()))
	}
	<-ctx.Done()
}

// eachMaster calls fn with a client of each master: the one client, or
// every master of a Redis Cluster (keyspace notifications are per node).
func (f *Fleet) eachMaster(ctx context.Context, fn func(context.Context, redis.UniversalClient) error) error {
	if cc, ok := f.cfg.Redis.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return fn(ctx, m) })
	}
	return fn(ctx, f.cfg.Redis)
}

// enableSessionEvents adds sessionEventFlags to the server's
// notify-keyspace-events, keeping the flags already set.
func enableSessionEvents(ctx context.Context, c redis.UniversalClient, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cur, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return fmt.Errorf("read notify-keyspace-events: %w", err)
	}
	flags := cur["notify-keyspace-events"]
	want := flags
	for _, fl := range sessionEventFlags {
		if !strings.ContainsRune(want, fl) && !(fl != 'E' && strings.ContainsRune(want, 'A')) {
			want += string(fl)
		}
	}
	if want == flags {
		return nil
	}
	if err := c.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		return fmt.Errorf("set notify-keyspace-events %q: %w", want, err)
	}
	return nil
}
