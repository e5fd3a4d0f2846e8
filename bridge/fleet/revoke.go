package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Revocations: the Redis sorted set {p}:revoked holds "jti:<id>" and
// "sid:<hash>" members scored by the Unix time after which they can be
// forgotten; a message on the channel {p}:revoked tells every instance at
// once. Each instance keeps a local replica (the Bridge's denylist), fed
// by the channel and resynced from the set every RevocationResync, so the
// JWT path never calls Redis.

// revocationSlack is how long the revocation set outlives its latest
// entry in Redis (clock differences between instances).
const revocationSlack = time.Hour

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

// member is a revocation's name in the set and on the channel.
func member(r bridge.Revocation) string {
	if r.SID != "" {
		return "sid:" + r.SID
	}
	return "jti:" + r.JTI
}

// parseMember is the revocation a set member or message names.
func parseMember(m string, until time.Time) (bridge.Revocation, bool) {
	kind, id, ok := strings.Cut(m, ":")
	switch {
	case !ok || id == "":
		return bridge.Revocation{}, false
	case kind == "jti":
		return bridge.Revocation{JTI: id, Until: until}, true
	case kind == "sid":
		return bridge.Revocation{SID: id, Until: until}, true
	}
	return bridge.Revocation{}, false
}

// Revoke makes revocations known to every instance of the fleet, in one
// round trip bounded by FlushTimeout: they are added to the set that
// instances resync from and announced on its channel. An error wraps
// bridge.ErrStoreUnavailable.
func (f *Fleet) Revoke(ctx context.Context, rs []bridge.Revocation) error {
	if len(rs) == 0 {
		return nil
	}
	now := f.now()
	args := []any{now.Unix(), int64(revocationSlack / time.Second)}
	for _, r := range rs {
		args = append(args, r.Until.Unix(), member(r))
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	defer cancel()
	_, err := f.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		revokeScript.Eval(ctx, p, []string{f.keys.revoked()}, args...)
		for _, r := range rs {
			p.Publish(ctx, f.keys.revoked(), member(r)+" "+strconv.FormatInt(r.Until.Unix(), 10))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: revoke: %w", bridge.ErrStoreUnavailable, err)
	}
	return nil
}

// watchRevocations keeps b's denylist in step with Redis until ctx ends.
func (f *Fleet) watchRevocations(ctx context.Context, b *bridge.Bridge) {
	sub := f.cfg.Redis.Subscribe(ctx, f.keys.revoked())
	defer sub.Close()
	msgs := sub.Channel()
	resync := time.NewTicker(RevocationResync)
	defer resync.Stop()
	f.resyncRevocations(ctx, b)
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			// "member unix": the member may hold spaces (an issuer-scoped jti).
			i := strings.LastIndexByte(m.Payload, ' ')
			if i < 0 {
				continue
			}
			name, unix := m.Payload[:i], m.Payload[i+1:]
			sec, err := strconv.ParseInt(unix, 10, 64)
			if r, ok := parseMember(name, time.Unix(sec, 0)); ok && err == nil {
				b.Deny(r)
			}
		case <-resync.C:
			f.resyncRevocations(ctx, b)
		}
	}
}

func (f *Fleet) resyncRevocations(ctx context.Context, b *bridge.Bridge) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	defer cancel()
	zs, err := f.cfg.Redis.ZRangeByScoreWithScores(ctx, f.keys.revoked(), &redis.ZRangeBy{
		Min: strconv.FormatInt(f.now().Unix(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		f.log().LogAttrs(ctx, slog.LevelDebug, "fleet: revocations not resynced", slog.String("error", err.Error()))
		return
	}
	for _, z := range zs {
		name, _ := z.Member.(string)
		if r, ok := parseMember(name, time.Unix(int64(z.Score), 0)); ok {
			b.Deny(r)
		}
	}
}
