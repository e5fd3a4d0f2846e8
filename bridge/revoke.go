package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocations: the Redis sorted set {p}:revoked holds "jti:<id>" and
// "sid:<hash>" members scored by the Unix time after which they can be
// forgotten; a message on the channel {p}:revoked tells every instance at
// once. Each instance keeps a local replica (the denylist), fed by the
// channel and resynced from the set every RevocationResync, so the JWT path
// never calls Redis.

// RevocationResync is the period of the full resync of the local replica:
// the bound on how late an instance that missed a message learns a
// revocation.
const RevocationResync = time.Second

// revocationSlack is how long the revocation set outlives its latest
// entry in Redis (clock differences between instances).
const revocationSlack = time.Hour

func (k keys) revoked() string { return k.p + ":revoked" }

// revocation denies a jti or sid (kind "jti" or "sid") until a time.
type revocation struct {
	kind, id string
	until    time.Time
}

// revokeScript adds revocations to the set atomically: expired members
// go, a member's time only ever grows (a shorter revocation never
// shortens a longer one), and the set lives as long as its latest member.
// A script rather than ZADD GT and EXPIRE GT, which need Redis 6.2 and 7.
// KEYS[1] the set; ARGV[1] now (Unix), ARGV[2] slack (seconds), then
// pairs of until (Unix) and member.
var revokeScript = redis.NewScript(`
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
for i = 3, #ARGV, 2 do
	local old = redis.call('ZSCORE', key, ARGV[i+1])
	if (not old) or tonumber(old) < tonumber(ARGV[i]) then
		redis.call('ZADD', key, ARGV[i], ARGV[i+1])
	end
end
local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if top[2] then
	redis.call('EXPIREAT', key, string.format('%d', tonumber(top[2]) + tonumber(ARGV[2])))
end
return 0
`)

// revoke denies the given jtis and sids here at once and, in one round
// trip bounded by FlushTimeout, on every instance through Redis. The local
// denial stands even when Redis cannot be reached (the error then wraps
// ErrStoreUnavailable).
func (b *Bridge) revoke(ctx context.Context, rs ...revocation) error {
	if len(rs) == 0 {
		return nil
	}
	now := b.cfg.Now()
	for _, r := range rs {
		b.revokeLocal(r.kind, r.id, r.until)
	}
	// Entries past their time are dropped here too, so that the denylist
	// of an instance that does not run the resync stays bounded.
	b.revoked.forget(now)
	if b.cfg.Redis == nil {
		return nil
	}
	k := newKeys(b.cfg.RedisPrefix)
	args := []any{now.Unix(), int64(revocationSlack / time.Second)}
	for _, r := range rs {
		args = append(args, r.until.Unix(), r.kind+":"+r.id)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FlushTimeout)
	defer cancel()
	_, err := b.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		revokeScript.Eval(ctx, p, []string{k.revoked()}, args...)
		for _, r := range rs {
			p.Publish(ctx, k.revoked(), r.kind+":"+r.id+" "+strconv.FormatInt(r.until.Unix(), 10))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: revoke: %w", ErrStoreUnavailable, err)
	}
	return nil
}

// revokeLocal denies a jti or sid in this instance's denylist until the
// given time, or longer if it already was.
func (b *Bridge) revokeLocal(kind, id string, until time.Time) {
	b.revoked.extend(kind, id, until)
	// Cached tokens need no purge: every cache hit checks the denylist.
}

// extend denies a jti or sid (kind "jti" or "sid") until the given time,
// never shortening an existing denial. The resync calls it for every entry
// every second: an entry already known takes only the read lock, so the
// token path (which reads the denylist) is not held up.
func (d *denylist) extend(kind, id string, until time.Time) {
	if id == "" || (kind != "jti" && kind != "sid") {
		return
	}
	d.mu.RLock()
	old, ok := d.table(kind)[id]
	d.mu.RUnlock()
	if ok && !old.Before(until) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.table(kind)
	if old, ok := m[id]; !ok || old.Before(until) {
		m[id] = until
	}
	d.counted()
}

// table returns the map of kind; d.mu must be held.
func (d *denylist) table(kind string) map[string]time.Time {
	if kind == "sid" {
		return d.sids
	}
	return d.jtis
}

// applyRevocation applies a "kind:id" message or set member.
func (b *Bridge) applyRevocation(member string, until time.Time) {
	kind, id, ok := strings.Cut(member, ":")
	if ok && id != "" {
		b.revokeLocal(kind, id, until)
	}
}

// watchRevocations keeps the local replica in step with Redis until ctx
// ends.
func (b *Bridge) watchRevocations(ctx context.Context) {
	k := newKeys(b.cfg.RedisPrefix)
	sub := b.cfg.Redis.Subscribe(ctx, k.revoked())
	defer sub.Close()
	msgs := sub.Channel()
	resync := time.NewTicker(RevocationResync)
	defer resync.Stop()
	b.resyncRevocations(ctx, k)
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			member, unix, _ := strings.Cut(m.Payload, " ")
			sec, err := strconv.ParseInt(unix, 10, 64)
			if err == nil {
				b.applyRevocation(member, time.Unix(sec, 0))
			}
		case <-resync.C:
			b.resyncRevocations(ctx, k)
		}
	}
}

func (b *Bridge) resyncRevocations(ctx context.Context, k keys) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FlushTimeout)
	defer cancel()
	now := b.cfg.Now()
	zs, err := b.cfg.Redis.ZRangeByScoreWithScores(ctx, k.revoked(), &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Unix(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		b.log.LogAttrs(ctx, slog.LevelDebug, "bridge: revocations not resynced", slog.String("error", err.Error()))
		b.revoked.forget(now)
		return
	}
	for _, z := range zs {
		member, _ := z.Member.(string)
		b.applyRevocation(member, time.Unix(int64(z.Score), 0))
	}
	b.revoked.forget(now)
}
