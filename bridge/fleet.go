package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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
const DefaultRedisPrefix = "sessionbridge"

// Field names inside an hourly hash.
const (
	fieldRequest   = "q" // q\troute\tmode\tsource
	fieldConverted = "c" // c\troute
	fieldRetired   = "t" // t\troute
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
type keys struct{ p string }

func newKeys(prefix string) keys {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return keys{p: "{" + prefix + "}"}
}

func (k keys) hour(t time.Time) string { return k.p + ":h:" + t.UTC().Format("2006010215") }
func (k keys) day(t time.Time) string  { return k.p + ":s:" + t.UTC().Format("20060102") }
func (k keys) seq(run string) string   { return k.p + ":seq:" + run }
func (k keys) modes() string           { return k.p + ":modes" }
func (k keys) effective() string       { return k.p + ":effective" }

// batch is one flush: deltas for one hourly bucket, sent until Redis
// acknowledges it. It never changes once made, so that a re-send whose
// first attempt did land is recognised by its sequence number.
type batch struct {
	seq    uint64
	at     time.Time
	fields []any // field, delta, field, delta, ...
	total  uint64
}

// flusher moves the in-process counters to Redis.
type flusher struct {
	b        *Bridge
	rdb      redis.UniversalClient
	keys     keys
	instance string
	seqKey   string // this run's sequence key
	ttl      time.Duration

	mu       sync.Mutex // one flush at a time
	seq      uint64
	baseline *counters // counts already put in a batch
	pending  *batch

	sidMu   sync.Mutex
	sids    map[string]struct{}
	maxSIDs int

	modesMu    sync.Mutex
	fleetModes map[string]struct{} // routes whose mode a fleet override set

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

func newFlusher(b *Bridge) *flusher {
	var id, run [8]byte
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(run[:])
	instance := b.cfg.InstanceID
	if instance == "" {
		instance = hex.EncodeToString(id[:])
	}
	k := newKeys(b.cfg.RedisPrefix)
	return &flusher{
		b:          b,
		rdb:        b.cfg.Redis,
		keys:       k,
		instance:   instance,
		seqKey:     k.seq(instance + ":" + hex.EncodeToString(run[:])),
		ttl:        b.cfg.Retention,
		baseline:   new(counters),
		sids:       make(map[string]struct{}),
		maxSIDs:    maxSessionHashes,
		fleetModes: make(map[string]struct{}),
	}
}

// maxSessionHashes bounds the session hashes buffered between flushes.
const maxSessionHashes = 50000

// observeSession records a session hash for the distinct-sessions count.
func (f *flusher) observeSession(sid string) {
	f.sidMu.Lock()
	defer f.sidMu.Unlock()
	if _, ok := f.sids[sid]; ok {
		return
	}
	if len(f.sids) >= f.maxSIDs {
		f.droppedSIDs.Add(1)
		return
	}
	f.sids[sid] = struct{}{}
}

// next snapshots the counts not yet in a batch into a new batch; nil when
// there is nothing to send.
func (f *flusher) next(now time.Time) *batch {
	c, base := f.b.counters, f.baseline
	t := f.b.routes
	n := int(t.n.Load())
	bt := &batch{at: now}
	add := func(field string, cur *atomic.Uint64, old *atomic.Uint64) uint64 {
		v := cur.Load()
		d := v - old.Load()
		if d == 0 {
			return 0
		}
		old.Store(v)
		bt.fields = append(bt.fields, field, strconv.FormatUint(d, 10))
		return d
	}
	for i := 0; i < n; i++ {
		route := t.names[i]
		for m := 0; m < int(numModes); m++ {
			for s := 0; s < int(numSources); s++ {
				j := (i*int(numModes)+m)*int(numSources) + s
				if c.requests[j].Load() == base.requests[j].Load() {
					continue
				}
				bt.total += add(strings.Join([]string{fieldRequest, route, Mode(m).String(), Source(s).String()}, fieldSep),
					&c.requests[j], &base.requests[j])
			}
		}
		if c.conversions[i].Load() != base.conversions[i].Load() {
			add(fieldConverted+fieldSep+route, &c.conversions[i], &base.conversions[i])
		}
		if c.retired[i].Load() != base.retired[i].Load() {
			add(fieldRetired+fieldSep+route, &c.retired[i], &base.retired[i])
		}
		for r := 0; r < int(numReasons); r++ {
			j := i*int(numReasons) + r
			if c.rejections[j].Load() != base.rejections[j].Load() {
				add(strings.Join([]string{fieldRejection, route, Reason(r).String()}, fieldSep), &c.rejections[j], &base.rejections[j])
			}
		}
	}
	if len(bt.fields) == 0 {
		return nil
	}
	f.seq++
	bt.seq = f.seq
	return bt
}

// flush sends the pending batch, if any, then a new one, in one pipeline
// each; it stops at the first failure and keeps that batch for the next
// attempt.
func (f *flusher) flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.b.cfg.Now()
	for range 2 {
		resend := f.pending != nil
		if !resend {
			f.pending = f.next(now)
		}
		if err := f.send(ctx, f.pending, now); err != nil {
			f.errors.Add(1)
			if f.pending != nil {
				f.pendingCount.Store(f.pending.total)
			}
			return err
		}
		if f.pending != nil {
			f.flushed.Add(f.pending.total)
		}
		f.pending = nil
		f.pendingCount.Store(0)
		if !resend {
			return nil // the new counts went out: no second round trip
		}
	}
	return nil
}

// send applies bt (which may be nil) and the session hashes in one
// pipeline, and publishes the modes this instance runs with.
func (f *flusher) send(ctx context.Context, bt *batch, now time.Time) error {
	f.sidMu.Lock()
	sids := make([]any, 0, len(f.sids))
	for s := range f.sids {
		sids = append(sids, s)
	}
	f.sidMu.Unlock()

	_, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if bt != nil {
			args := append([]any{bt.seq, int64(f.ttl / time.Second)}, bt.fields...)
			flushScript.Eval(ctx, p, []string{f.seqKey, f.keys.hour(bt.at)}, args...)
		}
		if len(sids) > 0 {
			p.PFAdd(ctx, f.keys.day(now), sids...)
			p.Expire(ctx, f.keys.day(now), f.ttl)
		}
		if modes := f.b.effectiveModes(); len(modes) > 0 {
			p.HSet(ctx, f.keys.effective(), modes)
			p.Expire(ctx, f.keys.effective(), f.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bridge: flush counters to redis: %w", err)
	}
	if len(sids) > 0 {
		f.sidMu.Lock()
		for _, s := range sids {
			delete(f.sids, s.(string))
		}
		f.sidMu.Unlock()
	}
	return nil
}

// effectiveModes lists every known route with the mode it runs in now.
func (b *Bridge) effectiveModes() map[string]any {
	t := b.routes
	n := int(t.n.Load())
	out := make(map[string]any, n)
	for i := idxOther + 1; i < n; i++ {
		out[t.names[i]] = t.mode(i).String()
	}
	return out
}

// refreshModes applies the run-time mode overrides stored in Redis. A
// fleet override that disappears (ResetMode) returns its route to the
// configured mode; a route the fleet never overrode keeps whatever
// Bridge.SetMode set in this process.
func (b *Bridge) refreshModes(ctx context.Context) error {
	overrides, err := b.fleet().Modes(ctx)
	if err != nil {
		return err
	}
	f := b.flusher
	f.modesMu.Lock()
	defer f.modesMu.Unlock()
	for route, m := range overrides {
		if err := b.SetMode(route, m); err != nil {
			b.log.Warn("bridge: run-time mode not applied", "route", route, "error", err)
			continue
		}
		f.fleetModes[route] = struct{}{}
	}
	for route := range f.fleetModes {
		if _, ok := overrides[route]; !ok {
			b.ResetMode(route)
			delete(f.fleetModes, route)
		}
	}
	return nil
}

// fleet returns the Fleet view of the bridge's Redis.
func (b *Bridge) fleet() *Fleet {
	return &Fleet{Redis: b.cfg.Redis, Prefix: b.cfg.RedisPrefix, Retention: b.cfg.Retention, ReadyAfter: b.cfg.ReadyAfter}
}

// Run does the bridge's background work until ctx ends or Close is called:
// it loads and refreshes the trusted issuers' JWKS, flushes the counters to
// Redis every FlushInterval and applies run-time mode changes every
// ModeRefreshInterval. It returns nil.
func (b *Bridge) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, rk := range b.remote {
		go rk.start(ctx)
	}
	if b.cfg.Redis != nil {
		go b.watchRevocations(ctx)
	}
	if b.flusher == nil {
		select {
		case <-ctx.Done():
		case <-b.closed:
		}
		return nil
	}
	b.runModes(ctx)
	flush := time.NewTicker(b.cfg.FlushInterval)
	defer flush.Stop()
	modes := time.NewTicker(b.cfg.ModeRefreshInterval)
	defer modes.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.closed:
			return nil
		case <-flush.C:
			fctx, cancel := context.WithTimeout(ctx, b.cfg.FlushTimeout)
			if err := b.flusher.flush(fctx); err != nil {
				b.log.LogAttrs(ctx, slog.LevelWarn, "bridge: counters kept in memory until redis answers",
					slog.String("error", err.Error()), slog.Uint64("pending_requests", b.flusher.pendingCount.Load()))
			}
			cancel()
		case <-modes.C:
			b.runModes(ctx)
		}
	}
}

func (b *Bridge) runModes(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, b.cfg.FlushTimeout)
	defer cancel()
	if err := b.refreshModes(mctx); err != nil {
		b.log.LogAttrs(ctx, slog.LevelDebug, "bridge: run-time modes not refreshed; keeping the last known",
			slog.String("error", err.Error()))
	}
}

// Flush sends the counts not yet in Redis now. Run calls it periodically
// and Close once more.
func (b *Bridge) Flush(ctx context.Context) error {
	if b.flusher == nil {
		return errors.New("bridge: Config.Redis is not set")
	}
	return b.flusher.flush(ctx)
}

// Close ends Run and flushes the counters one last time within
// Config.FlushTimeout. It is safe to call more than once; later calls do
// nothing.
//
// Call it after the HTTP server has stopped handing requests to the
// middleware (http.Server.Shutdown): a request is counted before its
// handler runs, so handlers still running are included, but a request
// counted after the final flush is not flushed. If the final flush is not
// acknowledged, Close returns the error and adds the requests it held to
// the dropped count (sessionbridge_flush_dropped_total{kind="request"}):
// exact when Redis could not be reached, an upper bound when Redis hung,
// since a hung Redis may still apply the batch once it wakes up.
func (b *Bridge) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closed)
		if b.flusher == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.FlushTimeout)
		defer cancel()
		if err = b.flusher.flush(ctx); err != nil {
			lost := b.flusher.unflushed()
			b.flusher.lostOnClose.Add(lost)
			b.log.Error("bridge: final flush failed; counts lost unless redis applies the unacknowledged batch", "requests", lost, "error", err)
		}
	})
	return err
}

// unflushed counts the requests not applied in Redis.
func (f *flusher) unflushed() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var total uint64
	for i := range f.b.counters.requests {
		total += f.b.counters.requests[i].Load() - f.baseline.requests[i].Load()
	}
	if f.pending != nil {
		total += f.pending.total
	}
	return total
}
