// Package fleet is the fleet-wide side of sessionbridge, on Redis: the
// instances of an app flush their counts into shared hourly buckets
// (exactly once, through outages and restarts), learn each other's
// revocations, and run with the route modes an operator sets at run time;
// operators read the migration report, as JSON, as an HTML dashboard or
// with bridgectl.
//
// A *Fleet is a bridge.Fleet: give it to bridge.Config.Fleet, and run it
// beside the Bridge.
//
//	f, err := fleet.New(fleet.Config{Redis: rdb})
//	b, err := bridge.New(bridge.Config{Fleet: f, ...})
//	go f.Run(ctx)
//	defer f.Close() // after http.Server.Shutdown: the final flush
//
// A Fleet that no Bridge uses reads and steers the fleet's state from
// outside (bridgectl does). An app without Redis has no Fleet: it serves
// its own in-process counts with InstanceReportHandler.
package fleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Defaults of Config fields left zero.
const (
	DefaultPrefix              = "sessionbridge"
	DefaultFlushInterval       = 5 * time.Second
	DefaultFlushTimeout        = 2 * time.Second
	DefaultModeRefreshInterval = 2 * time.Second
	DefaultRetention           = 8 * 24 * time.Hour
	DefaultReadyAfter          = 24 * time.Hour
	// DefaultSessionKeyPrefix is the default Config.SessionKeyPrefix.
	DefaultSessionKeyPrefix = "session_"
	// NoSessionEvents, as Config.SessionKeyPrefix, does not watch session
	// keys.
	NoSessionEvents = "-"
)

// Config configures a Fleet. Fields left zero take the default their
// comment names; a negative duration is an error.
type Config struct {
	// Redis is the client: a *redis.Client, a sentinel failover client or
	// a *redis.ClusterClient. Required. Set ContextTimeoutEnabled on it.
	Redis redis.UniversalClient
	// App names the app whose fleet this is: the instances of one app
	// share it, two apps never do. The report names it ("app"), and it
	// makes the default Prefix. Default: the attached Bridge's Audience
	// (bridge.Config.Audience, the app its tokens are for). No braces.
	App string
	// Prefix names the fleet's keys ({prefix}:…, one hash tag, so that a
	// Redis Cluster keeps them in one slot). Default DefaultPrefix + ":" +
	// App ("sessionbridge:shop"), so that apps sharing a Redis never share
	// keys. Earlier releases used DefaultPrefix alone: set Prefix to
	// DefaultPrefix to keep those keys (docs/upgrading.md). No braces.
	Prefix string
	// InstanceID names this instance in the flush bookkeeping. Default: a
	// random ID per process.
	InstanceID string
	// FlushInterval is the period of the counter flush. Default 5s.
	FlushInterval time.Duration
	// FlushTimeout bounds each flush, mode refresh and revocation, and
	// the final flush in Close. Default 2s.
	FlushTimeout time.Duration
	// ModeRefreshInterval is how often run-time modes are read from Redis.
	// Default 2s.
	ModeRefreshInterval time.Duration
	// Retention is how long hourly counts stay in Redis: the report's
	// longest window. Default 8 days; at least an hour.
	Retention time.Duration
	// ReadyAfter is how long a dual route's session share must stay at
	// zero before the report calls it ready to switch to jwt. Default 24h.
	ReadyAfter time.Duration
	// SessionKeyPrefix is the Redis key prefix of the legacy sessions, in
	// the fleet's Redis: when such a key is deleted, expires or is
	// evicted, every instance refuses the tokens minted from it within a
	// second or two (keyspace notifications, which Run turns on where
	// Redis allows it). Not with bridge.Config.RetireSessions, which
	// deletes sessions on purpose. Default "session_" (boj/redistore's
	// and bridge/redisstore's); NoSessionEvents turns it off.
	SessionKeyPrefix string
	// Logger receives background errors. Default: the Bridge's, else
	// discard.
	Logger *slog.Logger
	// Now is the clock. Default: the Bridge's, else time.Now.
	Now func() time.Time
}

// Fleet is one instance's view of the fleet-wide state in Redis. Build it
// with New; it is safe for concurrent use.
type Fleet struct {
	cfg Config
	// k are the fleet's keys: fixed by New when Config names the fleet
	// (App or Prefix), else by Attach, from the Bridge's Audience.
	k      atomic.Pointer[keys]
	b      atomic.Pointer[bridge.Bridge] // set once by Attach
	attach sync.Mutex                    // one Attach at a time
	fl     *flusher
	// The Bridge's logger and clock, where Config has none (Attach).
	bridgeLog atomic.Pointer[slog.Logger]
	bridgeNow atomic.Pointer[func() time.Time]

	modesMu    sync.Mutex
	fleetModes map[string]struct{} // routes whose mode a fleet override set

	closeOnce sync.Once
	closed    chan struct{}

	// sessionEventsEvery is how often Run checks every master's keyspace
	// notifications (sessionend.go); tests shorten it.
	sessionEventsEvery time.Duration
}

// New validates cfg, fills its defaults and returns a Fleet. It does no
// I/O and starts no goroutine.
func New(cfg Config) (*Fleet, error) {
	if cfg.Redis == nil {
		return nil, errors.New("fleet: Config.Redis is required")
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, errors.New("fleet: Config.Prefix must not contain braces (it becomes the hash tag)")
	}
	if strings.ContainsAny(cfg.App, "{}") {
		return nil, errors.New("fleet: Config.App must not contain braces (it names the hash tag)")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"FlushInterval", &cfg.FlushInterval, DefaultFlushInterval},
		{"FlushTimeout", &cfg.FlushTimeout, DefaultFlushTimeout},
		{"ModeRefreshInterval", &cfg.ModeRefreshInterval, DefaultModeRefreshInterval},
		{"Retention", &cfg.Retention, DefaultRetention},
		{"ReadyAfter", &cfg.ReadyAfter, DefaultReadyAfter},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("fleet: Config.%s: %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.SessionKeyPrefix == "" {
		cfg.SessionKeyPrefix = DefaultSessionKeyPrefix
	}
	if cfg.Retention < time.Hour {
		return nil, fmt.Errorf("fleet: Config.Retention: %v is shorter than an hour", cfg.Retention)
	}
	if cfg.InstanceID == "" {
		var id [8]byte
		_, _ = rand.Read(id[:])
		cfg.InstanceID = hex.EncodeToString(id[:])
	}
	f := &Fleet{
		cfg:        cfg,
		fleetModes: make(map[string]struct{}),
		closed:     make(chan struct{}),

		sessionEventsEvery: sessionEventsCheck,
	}
	if cfg.Prefix != "" || cfg.App != "" {
		k := newKeys(cmp.Or(cfg.Prefix, appPrefix(cfg.App)))
		f.k.Store(&k)
	}
	f.fl = newFlusher(f)
	return f, nil
}

// Config returns the configuration the Fleet runs with, defaults filled
// in. App and Prefix are empty until known: a Fleet that Config named by
// neither takes them from the Bridge it is attached to.
func (f *Fleet) Config() Config {
	cfg := f.cfg
	cfg.App = f.app()
	if k := f.k.Load(); k != nil {
		cfg.Prefix = k.prefix
	}
	return cfg
}

// Attach binds the Fleet to the Bridge it serves; bridge.New calls it. A
// Fleet serves one Bridge: a second Attach is an error. The Bridge's
// logger and clock become the Fleet's where Config left them unset, and a
// Fleet that Config did not name (App, Prefix) takes its keys from the
// Bridge's Audience.
func (f *Fleet) Attach(b *bridge.Bridge) error {
	bc := b.Config()
	f.attach.Lock()
	defer f.attach.Unlock()
	if f.b.Load() != nil {
		return errors.New("fleet: already attached to a Bridge")
	}
	if f.k.Load() == nil {
		if strings.ContainsAny(bc.Audience, "{}") {
			return fmt.Errorf("fleet: the Bridge's Audience %q has braces and cannot name the fleet's keys: set fleet.Config.App or Prefix", bc.Audience)
		}
		k := newKeys(appPrefix(bc.Audience))
		f.k.Store(&k)
	}
	f.b.Store(b)
	if f.cfg.Logger == nil {
		f.bridgeLog.Store(bc.Logger)
	}
	if f.cfg.Now == nil {
		f.bridgeNow.Store(&bc.Now)
	}
	return nil
}

func (f *Fleet) log() *slog.Logger {
	if f.cfg.Logger != nil {
		return f.cfg.Logger
	}
	if l := f.bridgeLog.Load(); l != nil {
		return l
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)

func (f *Fleet) now() time.Time {
	if f.cfg.Now != nil {
		return f.cfg.Now()
	}
	if now := f.bridgeNow.Load(); now != nil {
		return (*now)()
	}
	return time.Now()
}

// SessionSeen records a session hash for the distinct-sessions count. It
// never blocks on Redis: hashes are buffered (bounded) until the next
// flush.
func (f *Fleet) SessionSeen(sid string) { f.fl.observeSession(sid) }

// Run does the fleet's background work for its Bridge until ctx ends or
// Close is called: it flushes the counters to Redis every FlushInterval,
// applies run-time mode changes every ModeRefreshInterval, and keeps the
// Bridge's revocations in step with the other instances'. It returns nil.
// Start it after bridge.New: a Fleet that no Bridge was attached to when
// Run started only waits.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := f.b.Load()
	if b == nil {
		select {
		case <-ctx.Done():
		case <-f.closed:
		}
		return nil
	}
	if k, err := f.keys(); err == nil {
		f.warnOldKeys(ctx, k)
	}
	go f.watchRevocations(ctx, b)
	// Once sessions are retired, deleting one right after its conversion
	// is the point: its tokens are the credential then.
	if f.cfg.SessionKeyPrefix != NoSessionEvents && !b.Config().RetireSessions {
		go f.watchSessionEnds(ctx, b)
	}
	f.runModes(ctx, b)
	flush := time.NewTicker(f.cfg.FlushInterval)
	defer flush.Stop()
	modes := time.NewTicker(f.cfg.ModeRefreshInterval)
	defer modes.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.closed:
			return nil
		case <-flush.C:
			fctx, cancel := context.WithTimeout(ctx, f.cfg.FlushTimeout)
			if err := f.fl.flush(fctx, b); err != nil {
				f.log().LogAttrs(ctx, slog.LevelWarn, "fleet: counters kept in memory until redis answers",
					slog.String("error", err.Error()), slog.Uint64("pending_requests", f.fl.pendingCount.Load()))
			}
			cancel()
		case <-modes.C:
			f.runModes(ctx, b)
		}
	}
}

// Flush sends the counts not yet in Redis now. Run calls it periodically
// and Close once more.
func (f *Fleet) Flush(ctx context.Context) error {
	b := f.b.Load()
	if b == nil {
		return errors.New("fleet: no Bridge attached (bridge.Config.Fleet)")
	}
	return f.fl.flush(ctx, b)
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
// Stats().LostOnClose: exact when Redis could not be reached, an upper
// bound when Redis hung, since a hung Redis may still apply the batch once
// it wakes up.
func (f *Fleet) Close() error {
	var err error
	f.closeOnce.Do(func() {
		close(f.closed)
		b := f.b.Load()
		if b == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.FlushTimeout)
		defer cancel()
		if err = f.fl.flush(ctx, b); err != nil {
			lost := f.fl.unflushed(b)
			f.fl.lostOnClose.Add(lost)
			f.log().Error("fleet: final flush failed; counts lost unless redis applies the unacknowledged batch", "requests", lost, "error", err)
		}
	})
	return err
}

// Stats are the health of the counter flush.
type Stats struct {
	// Flushed counts the requests applied in Redis.
	Flushed uint64
	// Errors counts failed flush attempts.
	Errors uint64
	// Pending counts the requests in a batch Redis has not acknowledged.
	Pending uint64
	// DroppedSessionHashes counts session hashes past the bound of the
	// buffer between flushes (the distinct-sessions count misses them).
	DroppedSessionHashes uint64
	// LostOnClose counts requests whose final flush Close could not get
	// acknowledged.
	LostOnClose uint64
}

// Stats returns the health of the counter flush.
func (f *Fleet) Stats() Stats {
	return Stats{
		Flushed:              f.fl.flushed.Load(),
		Errors:               f.fl.errors.Load(),
		Pending:              f.fl.pendingCount.Load(),
		DroppedSessionHashes: f.fl.droppedSIDs.Load(),
		LostOnClose:          f.fl.lostOnClose.Load(),
	}
}
