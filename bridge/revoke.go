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

func (k keys) revoked() string { return k.p + ":revoked" }

// revoke denies a jti or sid (kind "jti" or "sid") until the given time,
// here at once and on every instance through Redis.
func (b *Bridge) revoke(ctx context.Context, kind, id string, until time.Time) error {
	b.revokeLocal(kind, id, until)
	if b.cfg.Redis == nil {
		return nil
	}
	member := kind + ":" + id
	k := newKeys(b.cfg.RedisPrefix)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FlushTimeout)
	defer cancel()
	_, err := b.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, k.revoked(), redis.Z{Score: float64(until.Unix()), Member: member})
		p.ZRemRangeByScore(ctx, k.revoked(), "-inf", strconv.FormatInt(b.cfg.Now().Unix(), 10))
		p.Expire(ctx, k.revoked(), b.cfg.TokenTTL+b.cfg.Leeway+time.Hour)
		p.Publish(ctx, k.revoked(), member+" "+strconv.FormatInt(until.Unix(), 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: revoke: %w", ErrStoreUnavailable, err)
	}
	return nil
}

func (b *Bridge) revokeLocal(kind, id string, until time.Time) {
	switch kind {
	case "jti":
		b.revoked.addJTI(id, until)
	case "sid":
		b.revoked.addSID(id, until)
	}
	// Cached tokens need no purge: every cache hit checks the denylist.
}

// applyRevocation applies a "kind:id unix" message or set member.
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
		return
	}
	for _, z := range zs {
		member, _ := z.Member.(string)
		kind, id, ok := strings.Cut(member, ":")
		if !ok || b.revoked.has(only(kind, "jti", id), only(kind, "sid", id)) {
			continue
		}
		b.applyRevocation(member, time.Unix(int64(z.Score), 0))
	}
	b.revoked.forget(now)
}

func only(kind, want, id string) string {
	if kind == want {
		return id
	}
	return ""
}
