package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Fleet-wide state in Redis. Every key carries the hash tag {prefix}, so
// that on Redis Cluster all of them live in one slot and the flush script
// may touch several at once.
//
//	{p}:h:YYYYMMDDHH   hash of hourly counts, expiring after the retention
//	{p}:seq:ID:RUN     last applied batch sequence of one process (instance
//	                   ID and a random per-run suffix), expiring after the
//	                   retention
//	{p}:s:YYYYMMDD     HyperLogLog of distinct session hashes per day
//	{p}:modes          hash route → mode: run-time overrides (bridgectl)
//	{p}:effective      hash route → mode: the modes instances run with
//	{p}:apps           hash app → unix seconds of its last flush: whose
//	                   counts these are (two apps sharing a prefix show)
//	{p}:dual           hash route → unix seconds: since when every instance
//	                   that flushed has run the route in dual mode (set
//	                   with HSETNX by an instance running it in dual, deleted
//	                   by one running it in another mode), expiring after
//	                   the retention
//	{p}:revoked        sorted set of revocations
//	{p}:revocations    stream of the latest revocations

// Field names inside an hourly hash.
const (
	fieldRequest   = "q" // q\troute\tmode\tsource
	fieldConverted = "c" // c\troute
	fieldRetired   = "t" // t\troute
	fieldGuests    = "g" // g\troute
	fieldReads     = "h" // h\troute (handler session reads)
	fieldRejection = "r" // r\troute\treason
	fieldSep       = "\t"
)

// flushScript applies one batch of counter deltas exactly once: a batch
// whose sequence number is not above the process's last applied one has
// been applied already (a re-sent or retried flush) and is skipped.
//
// The sequence is kept per process run, not per instance ID: a restarted
// process (or a second one configured with the same InstanceID) numbers
// its batches from 1 again, and under the bare instance ID those batches
// would be skipped as already applied.
//
// KEYS[1] the run's seq key, KEYS[2] hourly hash; ARGV[1] seq, ARGV[2] TTL
// seconds, then field, delta pairs.
var flushScript = redis.NewScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
`)

// keys names the fleet keys under a prefix.
type keys struct{ prefix, p string }

func newKeys(prefix string) keys { return keys{prefix: prefix, p: "{" + prefix + "}"} }

func (k keys) hour(t time.Time) string { return k.p + ":h:" + t.UTC().Format("2006010215") }
func (k keys) day(t time.Time) string  { return k.p + ":s:" + t.UTC().Format("20060102") }
func (k keys) seq(run string) string   { return k.p + ":seq:" + run }
func (k keys) modes() string           { return k.p + ":modes" }
func (k keys) effective() string       { return k.p + ":effective" }
func (k keys) dual() string            { return k.p + ":dual" }
func (k keys) apps() string            { return k.p + ":apps" }
func (k keys) revoked() string         { return k.p + ":revoked" }
func (k keys) revocations() string     { return k.p + ":revocations" }

// batch is one flush: deltas for one hourly bucket, sent until Redis
// acknowledges it. It never changes once made, so that a re-send whose
// first attempt did land is recognised by its sequence number.
type batch struct {
	seq    uint64
	at     time.Time
	fields []any // field, delta, field, delta, ...
	total  uint64
}

// countKey names one counter of a Bridge's snapshot.
type countKey struct {
	field  byte // fieldRequest, fieldConverted, ...
	route  string
	mode   bridge.Mode
	source bridge.Source
	reason bridge.Reason
}

func (k countKey) String() string {
	switch k.field {
	case fieldRequest[0]:
		return strings.Join([]string{fieldRequest, k.route, k.mode.String(), k.source.String()}, fieldSep)
	case fieldRejection[0]:
		return strings.Join([]string{fieldRejection, k.route, k.reason.String()}, fieldSep)
	}
	return string(k.field) + fieldSep + k.route
}

// flusher moves a Bridge's in-process counters to Redis.
type flusher struct {
	f   *Fleet
	rdb redis.UniversalClient
	run string // this run's name in its sequence key: instance ID and a random suffix
	ttl time.Duration

	mu         sync.Mutex // one flush at a time
	seq        uint64
	baseline   map[countKey]uint64 // counts already put in a batch
	pending    *batch
	sharedWith string // the other apps last warned about (warnShared)

	sidMu   sync.Mutex
	sids    map[string]struct{}
	maxSIDs int

	flushed      atomic.Uint64 // requests applied in Redis
	errors       atomic.Uint64 // failed flush attempts
	droppedSIDs  atomic.Uint64 // session hashes past the buffer's bound
	pendingCount atomic.Uint64 // requests waiting for Redis
	// lostOnClose counts the requests whose final flush Close could not
	// get acknowledged: an upper bound of the loss, exact when Redis was
	// unreachable; a Redis that only hung may still apply the batch it
	// was sent (once: it is never re-sent) when it wakes up.
	lostOnClose atomic.Uint64
}

func newFlusher(f *Fleet) *flusher {
	var run [8]byte
	_, _ = rand.Read(run[:])
	return &flusher{
		f:        f,
		rdb:      f.cfg.Redis,
		run:      f.cfg.InstanceID + ":" + hex.EncodeToString(run[:]),
		ttl:      f.cfg.Retention,
		baseline: make(map[countKey]uint64),
		sids:     make(map[string]struct{}),
		maxSIDs:  maxSessionHashes,
	}
}

// maxSessionHashes bounds the session hashes buffered between flushes.
const maxSessionHashes = 50000

// observeSession records a session hash for the distinct-sessions count.
func (fl *flusher) observeSession(sid string) {
	fl.sidMu.Lock()
	defer fl.sidMu.Unlock()
	if _, ok := fl.sids[sid]; ok {
		return
	}
	if len(fl.sids) >= fl.maxSIDs {
		fl.droppedSIDs.Add(1)
		return
	}
	fl.sids[sid] = struct{}{}
}

// counts calls fn with every counter of snap.
func counts(snap []bridge.RouteCounts, fn func(k countKey, v uint64)) {
	for _, rc := range snap {
		for m, sc := range rc.ByMode() {
			for s, n := range sc.All() {
				fn(countKey{field: fieldRequest[0], route: rc.Route, mode: m, source: s}, n)
			}
		}
		fn(countKey{field: fieldConverted[0], route: rc.Route}, rc.Conversions)
		fn(countKey{field: fieldRetired[0], route: rc.Route}, rc.Retired)
		fn(countKey{field: fieldGuests[0], route: rc.Route}, rc.Guests)
		fn(countKey{field: fieldReads[0], route: rc.Route}, rc.HandlerReads)
		for r, n := range rc.Rejections.All() {
			fn(countKey{field: fieldRejection[0], route: rc.Route, reason: r}, n)
		}
	}
}

// next snapshots the counts not yet in a batch into a new batch; nil when
// there is nothing to send.
func (fl *flusher) next(b *bridge.Bridge, now time.Time) *batch {
	bt := &batch{at: now}
	counts(b.Snapshot(), func(k countKey, v uint64) {
		d := v - fl.baseline[k]
		if d == 0 {
			return
		}
		fl.baseline[k] = v
		bt.fields = append(bt.fields, k.String(), strconv.FormatUint(d, 10))
		if k.field == fieldRequest[0] {
			bt.total += d
		}
	})
	if len(bt.fields) == 0 {
		return nil
	}
	fl.seq++
	bt.seq = fl.seq
	return bt
}

// flush sends the pending batch, if any, then a new one, in one pipeline
// each; it stops at the first failure and keeps that batch for the next
// attempt.
func (fl *flusher) flush(ctx context.Context, b *bridge.Bridge) error {
	k, err := fl.f.keys()
	if err != nil {
		return err
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	now := fl.f.now()
	for range 2 {
		resend := fl.pending != nil
		if !resend {
			fl.pending = fl.next(b, now)
		}
		if err := fl.send(ctx, k, b, fl.pending, now); err != nil {
			fl.errors.Add(1)
			if fl.pending != nil {
				fl.pendingCount.Store(fl.pending.total)
			}
			return err
		}
		if fl.pending != nil {
			fl.flushed.Add(fl.pending.total)
		}
		fl.pending = nil
		fl.pendingCount.Store(0)
		if !resend {
			return nil // the new counts went out: no second round trip
		}
	}
	return nil
}

// send applies bt (which may be nil) and the session hashes in one
// pipeline, publishes the modes this instance runs with, and notes the
// app as one whose counts the prefix holds.
func (fl *flusher) send(ctx context.Context, k keys, b *bridge.Bridge, bt *batch, now time.Time) error {
	fl.sidMu.Lock()
	sids := make([]any, 0, len(fl.sids))
	for s := range fl.sids {
		sids = append(sids, s)
	}
	fl.sidMu.Unlock()

	app := fl.f.app()
	var apps *redis.MapStringStringCmd
	_, err := fl.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if bt != nil {
			args := append([]any{bt.seq, int64(fl.ttl / time.Second)}, bt.fields...)
			flushScript.Eval(ctx, p, []string{fl.seqKey(k), k.hour(bt.at)}, args...)
		}
		if len(sids) > 0 {
			p.PFAdd(ctx, k.day(now), sids...)
			p.Expire(ctx, k.day(now), fl.ttl)
		}
		if modes := routeModes(b); len(modes) > 0 {
			p.HSet(ctx, k.effective(), effectiveModes(modes))
			p.Expire(ctx, k.effective(), fl.ttl)
			fl.dualClock(ctx, p, k, modes, now)
		}
		p.HSet(ctx, k.apps(), app, now.Unix())
		p.Expire(ctx, k.apps(), fl.ttl)
		apps = p.HGetAll(ctx, k.apps())
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleet: flush counters to redis: %w", err)
	}
	fl.warnShared(k, app, appsSince(apps.Val(), now.Add(-fl.ttl)))
	if len(sids) > 0 {
		fl.sidMu.Lock()
		for _, s := range sids {
			delete(fl.sids, s.(string))
		}
		fl.sidMu.Unlock()
	}
	return nil
}

// routeModes lists the routes a Bridge knows with the mode each runs in
// now, but for the pseudo-routes unmatched and other (the report shows
// them only when they saw traffic).
func routeModes(b *bridge.Bridge) map[string]bridge.Mode {
	snap := b.Snapshot()
	out := make(map[string]bridge.Mode, len(snap))
	for _, rc := range snap {
		if rc.Route == bridge.RouteUnmatched || rc.Route == bridge.RouteOther {
			continue
		}
		out[rc.Route] = rc.Mode
	}
	return out
}

// effectiveModes is routeModes as the hash the fleet publishes.
func effectiveModes(modes map[string]bridge.Mode) map[string]any {
	out := make(map[string]any, len(modes))
	for route, m := range modes {
		out[route] = m.String()
	}
	return out
}

// dualClock keeps the fleet's record of since when each route has run in
// dual mode (readiness, in the report): a route this instance runs in
// dual keeps the time already recorded, or gets now; a route it runs in
// another mode loses its record, so that the clock starts again when the
// route is dual on every instance. The hash expires with the retention.
func (fl *flusher) dualClock(ctx context.Context, p redis.Pipeliner, k keys, modes map[string]bridge.Mode, now time.Time) {
	stamp := strconv.FormatInt(now.Unix(), 10)
	var other []string
	for route, m := range modes {
		if m == bridge.Dual {
			p.HSetNX(ctx, k.dual(), route, stamp)
		} else {
			other = append(other, route)
		}
	}
	if len(other) > 0 {
		p.HDel(ctx, k.dual(), other...)
	}
	p.Expire(ctx, k.dual(), fl.ttl)
}

// seqKey is this run's sequence key.
func (fl *flusher) seqKey(k keys) string { return k.seq(fl.run) }

// warnShared logs, once per change, the other apps that flushed counts
// under this fleet's prefix within the retention (apps, sorted by their
// last flush): their counts are merged with this app's. It runs under
// fl.mu.
func (fl *flusher) warnShared(k keys, app string, apps []string) {
	others := slices.DeleteFunc(apps, func(a string) bool { return a == app })
	if key := strings.Join(others, ","); key != fl.sharedWith {
		fl.sharedWith = key
		if key != "" {
			fl.f.log().Error("fleet: other apps flush their counts under this fleet's prefix: the reports merge them. Give each app its own fleet.Config.Prefix (or leave it unset: the default is per app)",
				"prefix", k.prefix, "app", app, "other_apps", others)
		}
	}
}

// unflushed counts the requests not applied in Redis.
func (fl *flusher) unflushed(b *bridge.Bridge) uint64 {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	var total uint64
	counts(b.Snapshot(), func(k countKey, v uint64) {
		if k.field == fieldRequest[0] {
			total += v - fl.baseline[k]
		}
	})
	if fl.pending != nil {
		total += fl.pending.total
	}
	return total
}
