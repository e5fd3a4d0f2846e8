package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fleet reads and changes the fleet-wide state that bridges sharing a
// Redis keep there: the hourly counts behind the migration report, and the
// run-time mode overrides. It needs no Bridge: bridgectl uses it directly.
type Fleet struct {
	// Redis is the client. Required.
	Redis redis.UniversalClient
	// Prefix as in Config.RedisPrefix. Default "sessionbridge".
	Prefix string
	// Retention as in Config.Retention: the report's longest window.
	// Default 8 days.
	Retention time.Duration
	// ReadyAfter as in Config.ReadyAfter. Default 24h.
	ReadyAfter time.Duration
}

// SourceCounts are request counts by source.
type SourceCounts struct {
	Session   uint64 `json:"session"`
	JWTCookie uint64 `json:"jwt_cookie"`
	JWTBearer uint64 `json:"jwt_bearer"`
	Anonymous uint64 `json:"anonymous"`
	Rejected  uint64 `json:"rejected"`
}

func (c *SourceCounts) add(s Source, n uint64) {
	switch s {
	case SourceSession:
		c.Session += n
	case SourceJWTCookie:
		c.JWTCookie += n
	case SourceJWTBearer:
		c.JWTBearer += n
	case SourceAnonymous:
		c.Anonymous += n
	case SourceRejected:
		c.Rejected += n
	}
}

// Authenticated is the number of requests a credential authenticated.
func (c SourceCounts) Authenticated() uint64 { return c.Session + c.JWTCookie + c.JWTBearer }

// SessionShare is session / (session + jwt_cookie + jwt_bearer); 0 when no
// request was authenticated.
func (c SourceCounts) SessionShare() float64 {
	if a := c.Authenticated(); a > 0 {
		return float64(c.Session) / float64(a)
	}
	return 0
}

// Totals are the report's sums over every route.
type Totals struct {
	SourceCounts
	Converted uint64 `json:"converted"`
	// Retired counts converted sessions deleted (Config.RetireSessions).
	Retired uint64 `json:"retired,omitempty"`
}

// HourCounts are one route's counts in one hour.
type HourCounts struct {
	Hour   time.Time
	Counts SourceCounts
}

// RouteReport is one route's line in the report.
type RouteReport struct {
	Route        string       `json:"route"`
	Mode         string       `json:"mode"`
	Counts       SourceCounts `json:"counts"`
	Converted    uint64       `json:"converted"`
	Retired      uint64       `json:"retired,omitempty"`
	SessionShare float64      `json:"session_share"`

	// Rejections by reason, Hourly counts (oldest first, one per hour of
	// the window) and ReadyToSwitch feed the dashboard and the CLI; they
	// are not part of the JSON report.
	Rejections    map[string]uint64 `json:"-"`
	Hourly        []HourCounts      `json:"-"`
	ReadyToSwitch bool              `json:"-"`
}

// Report is the fleet-wide migration report.
type Report struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Scope       string        `json:"scope"`
	Since       time.Time     `json:"since"`
	Totals      Totals        `json:"totals"`
	Routes      []RouteReport `json:"routes"`
	// DistinctSessions estimates (HyperLogLog) the distinct legacy
	// sessions seen in the window's days: sessions still in use.
	DistinctSessions int64 `json:"distinct_sessions"`
	// ReadyAfter is the period behind RouteReport.ReadyToSwitch.
	ReadyAfter time.Duration `json:"-"`
}

func (f *Fleet) keys() keys { return newKeys(f.Prefix) }

func (f *Fleet) retention() time.Duration {
	if f.Retention > 0 {
		return f.Retention
	}
	return DefaultRetention
}

// Report reads the hourly counts from since (clamped to the retention) to
// now. modes gives the mode of each route as the caller knows it; routes it
// does not name take the mode the fleet published, else the override.
func (f *Fleet) Report(ctx context.Context, now, since time.Time, modes map[string]Mode) (*Report, error) {
	if f.Redis == nil {
		return nil, errors.New("bridge: Fleet.Redis is required")
	}
	k := f.keys()
	now = now.UTC()
	oldest := now.Add(-f.retention()).Truncate(time.Hour)
	if since.IsZero() || since.Before(oldest) {
		since = oldest
	}
	since = since.UTC().Truncate(time.Hour)
	var hours []time.Time
	for h := since; !h.After(now); h = h.Add(time.Hour) {
		hours = append(hours, h)
	}
	var days []string
	for d := since.Truncate(24 * time.Hour); !d.After(now); d = d.Add(24 * time.Hour) {
		days = append(days, k.day(d))
	}

	hourCmds := make([]*redis.MapStringStringCmd, len(hours))
	var pf *redis.IntCmd
	var effective, overrides *redis.MapStringStringCmd
	_, err := f.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range hours {
			hourCmds[i] = p.HGetAll(ctx, k.hour(h))
		}
		if len(days) > 0 { // none when since is in the future: PFCOUNT needs a key
			pf = p.PFCount(ctx, days...)
		}
		effective = p.HGetAll(ctx, k.effective())
		overrides = p.HGetAll(ctx, k.modes())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("bridge: read report: %w", err)
	}

	rep := &Report{GeneratedAt: now, Scope: "fleet", Since: since, Routes: []RouteReport{}}
	if pf != nil {
		rep.DistinctSessions = pf.Val()
	}
	rep.ReadyAfter = f.ReadyAfter
	if rep.ReadyAfter <= 0 {
		rep.ReadyAfter = DefaultReadyAfter
	}
	byRoute := map[string]*RouteReport{}
	route := func(name string) *RouteReport {
		r := byRoute[name]
		if r == nil {
			r = &RouteReport{Route: name, Rejections: map[string]uint64{}, Hourly: make([]HourCounts, len(hours))}
			for i, h := range hours {
				r.Hourly[i].Hour = h
			}
			byRoute[name] = r
		}
		return r
	}
	for i, cmd := range hourCmds {
		for field, v := range cmd.Val() {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			parts := strings.Split(field, fieldSep)
			switch {
			case parts[0] == fieldRequest && len(parts) == 4:
				s, ok := parseSource(parts[3])
				if !ok {
					continue
				}
				r := route(parts[1])
				r.Counts.add(s, n)
				r.Hourly[i].Counts.add(s, n)
			case parts[0] == fieldConverted && len(parts) == 2:
				route(parts[1]).Converted += n
			case parts[0] == fieldRetired && len(parts) == 2:
				route(parts[1]).Retired += n
			case parts[0] == fieldRejection && len(parts) == 3:
				route(parts[1]).Rejections[parts[2]] += n
			}
		}
	}
	for name := range modes {
		route(name)
	}
	for name := range effective.Val() {
		route(name)
	}
	for name, r := range byRoute {
		m, ok := modes[name]
		if !ok {
			if s, found := overrides.Val()[name]; found {
				m, _ = ParseMode(s)
			} else {
				m, _ = ParseMode(effective.Val()[name])
			}
		}
		r.Mode = m.String()
		r.SessionShare = r.Counts.SessionShare()
		r.ReadyToSwitch = m == Dual && readyToSwitch(r.Hourly, now, rep.ReadyAfter)
		rep.Totals.add(SourceSession, r.Counts.Session)
		rep.Totals.add(SourceJWTCookie, r.Counts.JWTCookie)
		rep.Totals.add(SourceJWTBearer, r.Counts.JWTBearer)
		rep.Totals.add(SourceAnonymous, r.Counts.Anonymous)
		rep.Totals.add(SourceRejected, r.Counts.Rejected)
		rep.Totals.Converted += r.Converted
		rep.Totals.Retired += r.Retired
		rep.Routes = append(rep.Routes, *r)
	}
	sort.Slice(rep.Routes, func(i, j int) bool { return rep.Routes[i].Route < rep.Routes[j].Route })
	return rep, nil
}

// readyToSwitch: over the last period, requests were authenticated and
// none by a session.
func readyToSwitch(hourly []HourCounts, now time.Time, period time.Duration) bool {
	from := now.Add(-period)
	if len(hourly) == 0 || hourly[0].Hour.After(from) {
		return false // the window does not cover the period
	}
	var authenticated uint64
	for _, h := range hourly {
		if h.Hour.Add(time.Hour).Before(from) {
			continue
		}
		if h.Counts.Session > 0 {
			return false
		}
		authenticated += h.Counts.Authenticated()
	}
	return authenticated > 0
}

func parseSource(s string) (Source, bool) {
	for i, n := range sourceNames {
		if n == s {
			return Source(i), true
		}
	}
	return 0, false
}

// Modes returns the run-time mode overrides.
func (f *Fleet) Modes(ctx context.Context) (map[string]Mode, error) {
	raw, err := f.Redis.HGetAll(ctx, f.keys().modes()).Result()
	if err != nil {
		return nil, fmt.Errorf("bridge: read run-time modes: %w", err)
	}
	out := make(map[string]Mode, len(raw))
	for route, s := range raw {
		m, err := ParseMode(s)
		if err != nil {
			continue
		}
		out[route] = m
	}
	return out, nil
}

// SetMode overrides the mode of route on every instance (within their
// ModeRefreshInterval).
func (f *Fleet) SetMode(ctx context.Context, route string, m Mode) error {
	if m >= numModes {
		return fmt.Errorf("bridge: invalid mode %v", m)
	}
	if !strings.HasPrefix(route, "/") && route != RouteUnmatched {
		return fmt.Errorf("bridge: route %q: want a mux path template such as /api/me", route)
	}
	if err := f.Redis.HSet(ctx, f.keys().modes(), route, m.String()).Err(); err != nil {
		return fmt.Errorf("bridge: set run-time mode: %w", err)
	}
	return nil
}

// ResetMode drops the override of route: instances return to their
// configured mode.
func (f *Fleet) ResetMode(ctx context.Context, route string) error {
	if err := f.Redis.HDel(ctx, f.keys().modes(), route).Err(); err != nil {
		return fmt.Errorf("bridge: reset run-time mode: %w", err)
	}
	return nil
}

// EffectiveModes returns the modes the instances published at their last
// flush, by route.
func (f *Fleet) EffectiveModes(ctx context.Context) (map[string]string, error) {
	m, err := f.Redis.HGetAll(ctx, f.keys().effective()).Result()
	if err != nil {
		return nil, fmt.Errorf("bridge: read effective modes: %w", err)
	}
	return m, nil
}

// Report returns the fleet-wide report with this instance's current modes.
func (b *Bridge) Report(ctx context.Context, since time.Time) (*Report, error) {
	if b.cfg.Redis == nil {
		return nil, errors.New("bridge: Config.Redis is not set")
	}
	modes := map[string]Mode{}
	t := b.routes
	n := int(t.n.Load())
	for i := idxOther + 1; i < n; i++ { // unmatched and other: only with traffic
		modes[t.names[i]] = t.mode(i)
	}
	return b.fleet().Report(ctx, b.cfg.Now(), since, modes)
}

// sinceParam parses the report's ?since= parameter: an RFC 3339 time or a
// duration back from now ("24h").
func sinceParam(r *http.Request, now time.Time) (time.Time, error) {
	s := r.URL.Query().Get("since")
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time or a duration such as 24h", s)
	}
	return t, nil
}

// ReportHandler serves the fleet-wide report as JSON (?since= narrows the
// window). Mount it behind admin authentication in production.
func (b *Bridge) ReportHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since, err := sinceParam(r, b.cfg.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := b.Report(r.Context(), since)
		if err != nil {
			b.log.Warn("bridge: report unavailable", "error", err)
			http.Error(w, "report unavailable: redis did not answer", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}
