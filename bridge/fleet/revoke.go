package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Revocations live in two keys that one script writes together: the
// sorted set {p}:revoked holds every live one ("jti:<id>", "sid:<hash>",
// "sub:<issuer> <sub>"), scored by the Unix time after which it can be
// forgotten; the stream {p}:revocations holds the latest changes, trimmed
// to about revocationStreamLen entries. An instance reads the whole set
// once (at start, or after it lost track), with ZSCAN in pages, and from
// then on only the stream's new entries, in a blocking XREAD: an idle
// fleet costs Redis one command per instance every revocationBlock,
// whatever the size of the set. Each instance keeps a local replica (the
// Bridge's denylist), so the JWT path never calls Redis.

const (
	// revocationSlack is how long the revocation keys outlive their
	// latest entry in Redis (clock differences between instances).
	revocationSlack = time.Hour
	// revocationStreamLen is about how many changes the stream keeps: an
	// instance that falls further behind reads the whole set again.
	revocationStreamLen = 100_000
	// revocationBlock is how long one XREAD waits for a change.
	revocationBlock = 5 * time.Second
	// revocationPage is the size of a ZSCAN page and of an XREAD batch.
	revocationPage = 10_000
)

// revokeScript adds revocations to the set atomically: expired members
// go, a member's time only ever grows (a shorter revocation never
// shortens a longer one), and the set lives as long as its latest member.
// Each one is appended to the stream too. A script rather than ZADD GT and
// EXPIRE GT, which need Redis 6.2 and 7.
// KEYS[1] the set, KEYS[2] the stream; ARGV[1] now (Unix), ARGV[2] slack
// (seconds), ARGV[3] the stream's length, then pairs of until (Unix) and
// member.
var revokeScript = redis.NewScript(`
local key, stream = KEYS[1], KEYS[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
for i = 4, #ARGV, 2 do
	local old = redis.call('ZSCORE', key, ARGV[i+1])
	if (not old) or tonumber(old) < tonumber(ARGV[i]) then
		redis.call('ZADD', key, ARGV[i], ARGV[i+1])
	end
	redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[i+1], 'u', ARGV[i])
end
local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if top[2] then
	local at = string.format('%d', tonumber(top[2]) + tonumber(ARGV[2]))
	redis.call('EXPIREAT', key, at)
	redis.call('EXPIREAT', stream, at)
end
return 0
`)

// member is a revocation's name in the set and the stream.
func member(r bridge.Revocation) string {
	switch {
	case r.SID != "":
		return "sid:" + r.SID
	case r.Subject != "":
		return "sub:" + r.Subject
	}
	return "jti:" + r.JTI
}

// parseMember is the revocation a set member or stream entry names.
func parseMember(m string, until time.Time) (bridge.Revocation, bool) {
	kind, id, ok := strings.Cut(m, ":")
	switch {
	case !ok || id == "":
		return bridge.Revocation{}, false
	case kind == "jti":
		return bridge.Revocation{JTI: id, Until: until}, true
	case kind == "sid":
		return bridge.Revocation{SID: id, Until: until}, true
	case kind == "sub":
		return bridge.Revocation{Subject: id, Until: until}, true
	}
	return bridge.Revocation{}, false
}

// Revoke makes revocations known to every instance of the fleet, in one
// round trip bounded by FlushTimeout: they are added to the set and the
// stream that instances read. An error wraps bridge.ErrStoreUnavailable.
func (f *Fleet) Revoke(ctx context.Context, rs []bridge.Revocation) error {
	if len(rs) == 0 {
		return nil
	}
	args := make([]any, 0, 3+2*len(rs))
	args = append(args, f.now().Unix(), int64(revocationSlack/time.Second), revocationStreamLen)
	for _, r := range rs {
		args = append(args, r.Until.Unix(), member(r))
	}
	k, err := f.keys()
	if err != nil {
		return fmt.Errorf("%w: revoke: %w", bridge.ErrStoreUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	defer cancel()
	if err := revokeScript.Run(ctx, f.cfg.Redis, []string{k.revoked(), k.revocations()}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: revoke: %w", bridge.ErrStoreUnavailable, err)
	}
	return nil
}

// watchRevocations keeps b's denylist in step with Redis until ctx ends:
// the whole set once, then the stream's changes. Whenever it loses track
// (Redis unreachable, or the stream trimmed past its position) it reads
// the whole set again.
func (f *Fleet) watchRevocations(ctx context.Context, b *bridge.Bridge) {
	// Loaded once, so that Revoke's EVALSHA finds it (best effort: Revoke
	// falls back to EVAL).
	lctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	_ = revokeScript.Load(lctx, f.cfg.Redis).Err()
	cancel()
	last := "" // the last stream entry applied; "" until the set is read
	for ctx.Err() == nil {
		var err error
		if last == "" {
			last, err = f.readRevocations(ctx, b)
		} else {
			last, err = f.followRevocations(ctx, b, last)
		}
		if err != nil && ctx.Err() == nil {
			f.log().LogAttrs(ctx, slog.LevelDebug, "fleet: revocations not synced", slog.String("error", err.Error()))
			last = ""
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// readRevocations denies every live member of the set and returns the
// stream position it holds from: the stream's last entry is read first,
// so that a revocation added during the scan is in the stream after it.
func (f *Fleet) readRevocations(ctx context.Context, b *bridge.Bridge) (string, error) {
	k, err := f.keys()
	if err != nil {
		return "", err
	}
	last := "0-0"
	tctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	xs, err := f.cfg.Redis.XRevRangeN(tctx, k.revocations(), "+", "-", 1).Result()
	cancel()
	if err != nil {
		return "", err
	}
	if len(xs) > 0 {
		last = xs[0].ID
	}
	// ZSCAN returns every member present from the scan's start to its
	// end, in pages that never block Redis for long.
	var cursor uint64
	for {
		tctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
		page, next, err := f.cfg.Redis.ZScan(tctx, k.revoked(), cursor, "", revocationPage).Result()
		cancel()
		if err != nil {
			return "", err
		}
		now := f.now().Unix()
		for i := 0; i+1 < len(page); i += 2 {
			until, err := strconv.ParseFloat(page[i+1], 64)
			if err != nil || int64(until) < now {
				continue
			}
			if r, ok := parseMember(page[i], time.Unix(int64(until), 0)); ok {
				b.Deny(r)
			}
		}
		if cursor = next; cursor == 0 {
			return last, nil
		}
	}
}

// followRevocations waits up to revocationBlock for stream entries after
// last, denies them and returns the new position, or "" when entries
// after last may have been trimmed unread.
func (f *Fleet) followRevocations(ctx context.Context, b *bridge.Bridge, last string) (string, error) {
	k, err := f.keys()
	if err != nil {
		return "", err
	}
	key := k.revocations()
	ss, err := f.cfg.Redis.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: revocationPage, Block: revocationBlock}).Result()
	if errors.Is(err, redis.Nil) {
		b.Deny(bridge.Revocation{}) // idle: forget what has expired
		return last, nil
	}
	if err != nil {
		return "", err
	}
	prev := last
	for _, s := range ss {
		for _, x := range s.Messages {
			last = x.ID
			m, _ := x.Values["m"].(string)
			u, _ := x.Values["u"].(string)
			sec, err := strconv.ParseInt(u, 10, 64)
			if r, ok := parseMember(m, time.Unix(sec, 0)); ok && err == nil {
				b.Deny(r)
			}
		}
	}
	// Entries after prev are lost if Redis deleted one (trimming) that
	// prev does not precede: read the set again. Redis 7 says which was
	// the last it deleted; an older Redis, only which entry comes first,
	// which also answers "lost" when the stream is new.
	tctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
	defer cancel()
	info, err := f.cfg.Redis.XInfoStream(tctx, key).Result()
	if err != nil {
		return "", err
	}
	if deleted := info.MaxDeletedEntryID; deleted != "" && !streamIDAfter(deleted, prev) ||
		deleted == "" && !streamIDAfter(info.FirstEntry.ID, prev) {
		return last, nil
	}
	return "", nil
}

// streamIDAfter reports whether stream ID a ("ms-seq") is after b.
func streamIDAfter(a, b string) bool {
	ams, aseq := splitStreamID(a)
	bms, bseq := splitStreamID(b)
	return ams > bms || ams == bms && aseq > bseq
}

func splitStreamID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}
