package fleet

import (
	"context"
	"errors"
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

// sessionEventsCheck is how often an instance checks every master's
// notify-keyspace-events and subscriptions: a master that a failover
// promoted, or that a Cluster added, gets its flags and its subscription
// within this period.
const sessionEventsCheck = 30 * time.Second

// watchSessionEnds denies the sid of every session key (Config.SessionKeyPrefix)
// Redis deletes, expires or evicts, until ctx ends. It enables the
// keyspace notifications it needs where Redis lets it, on every master and
// again every sessionEventsCheck (a promoted replica has its own
// configuration); where it cannot (a managed Redis that forbids CONFIG) it
// says so, loudly, once until it can: tokens then live until their exp,
// which never passes the session's remaining life where the session source
// can tell it.
func (f *Fleet) watchSessionEnds(ctx context.Context, b *bridge.Bridge) {
	ttl := b.Config().TokenTTL + b.Config().Leeway
	end := func(key string) {
		id, ok := strings.CutPrefix(key, f.cfg.SessionKeyPrefix)
		if !ok || id == "" {
			return
		}
		b.Deny(bridge.Revocation{Session: id, Until: f.now().Add(ttl)})
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		watched = map[string]bool{} // masters subscribed to, by address
		failing bool
	)
	defer wg.Wait()
	check := func() {
		var errs []error
		err := f.eachMaster(ctx, func(ctx context.Context, c redis.UniversalClient) error {
			err := enableSessionEvents(ctx, c, f.cfg.FlushTimeout)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			addr := "" // one client: its subscription follows a failover
			if m, ok := c.(*redis.Client); ok && c != f.cfg.Redis {
				addr = m.Options().Addr
			}
			if watched[addr] {
				return nil
			}
			watched[addr] = true
			sub := c.PSubscribe(ctx, sessionEventChannels...)
			wg.Go(func() {
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
			})
			return nil
		})
		if err = errors.Join(append(errs, err)...); err != nil && !failing && ctx.Err() == nil {
			f.log().LogAttrs(ctx, slog.LevelError, "fleet: Redis keyspace notifications are off and cannot be turned on: "+
				"a session deleted or expired in Redis does not end its tokens before their exp (set notify-keyspace-events to include "+sessionEventFlags+")",
				slog.String("error", err.Error()))
		}
		failing = err != nil
	}
	check()
	tick := time.NewTicker(f.sessionEventsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			check()
		}
	}
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
