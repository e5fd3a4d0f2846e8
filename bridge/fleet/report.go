package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Totals are the report's sums over every route. Their JSON form is the
// sources' counts with converted (and retired, when any) beside them.
type Totals struct {
	bridge.SourceCounts
	Converted uint64
	// Retired counts converted sessions deleted (Config.RetireSessions).
	Retired uint64
}

// MarshalJSON writes the counts by source, converted and retired.
func (t Totals) MarshalJSON() ([]byte, error) {
	counts, err := t.SourceCounts.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := append(counts[:len(counts)-1], `,"converted":`...)
	out = strconv.AppendUint(out, t.Converted, 10)
	if t.Retired > 0 {
		out = append(out, `,"retired":`...)
		out = strconv.AppendUint(out, t.Retired, 10)
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Totals) UnmarshalJSON(data []byte) error {
	var rest struct {
		Converted uint64 `json:"converted"`
		Retired   uint64 `json:"retired"`
	}
	if err := json.Unmarshal(data, &rest); err != nil {
		return fmt.Errorf("fleet: totals: %w", err)
	}
	t.Converted, t.Retired = rest.Converted, rest.Retired
	return t.SourceCounts.UnmarshalJSON(data)
}

// HourCounts are one route's counts in one hour.
type HourCounts struct {
	Hour   time.Time
	Counts bridge.SourceCounts
}

// RouteReport is one route's line in the report.
type RouteReport struct {
	Route        string              `json:"route"`
	Mode         string              `json:"mode"`
	Counts       bridge.SourceCounts `json:"counts"`
	Converted    uint64              `json:"converted"`
	Retired      uint64              `json:"retired,omitempty"`
	SessionShare float64             `json:"session_share"`
	// GuestSessions counts live sessions that named no user (a guest, or
	// a claims mapping that misses the app's user key).
	GuestSessions uint64 `json:"guest_sessions"`
	// HandlerSessionReads counts the session reads of the route's
	// handlers through bridge.Bridge.WrapStore's store: what still needs
	// the session, whatever credential came.
	HandlerSessionReads uint64 `json:"handler_session_reads"`
	// Public marks a route of the attached Bridge's
	// bridge.Config.PublicRoutes: it needs no credential and stays
	// legacy. A Fleet no Bridge uses (bridgectl) does not know it.
	Public bool `json:"public,omitempty"`
	// Rejections counts refused credentials by reason (only the reasons
	// seen).
	Rejections bridge.ReasonCounts `json:"rejections"`

	// ReadyToSwitch marks a dual route ready to move to jwt: every
	// instance has run it in dual mode for the whole ReadyAfter period,
	// requests in that period were authenticated, and none by a session.
	ReadyToSwitch bool `json:"ready_to_switch"`
	// ReadyReason says why the route is or is not ready, in words: "observed
	// in dual for only 3h of 24h", "12 session requests in the last 24h",
	// "ready: in dual for 2d 3h, no session request in the last 24h".
	ReadyReason string `json:"ready_reason"`

	// Hourly counts (oldest first, one per hour of the window) feed the
	// dashboard and the CLI; they are not part of the JSON report.
	Hourly []HourCounts `json:"-"`
}

// Scopes of a Report: whose counts it holds.
const (
	// ScopeFleet: every instance's counts, from the hourly buckets in
	// Redis (Fleet.Report).
	ScopeFleet = "fleet"
	// ScopeInstance: one process's in-process counts, for an app without
	// a Fleet (InstanceReport).
	ScopeInstance = "instance"
)

// Report is the migration report: fleet-wide (Fleet.Report), or one
// instance's without Redis (InstanceReport).
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	// Scope is ScopeFleet or ScopeInstance.
	Scope string `json:"scope"`
	// App names the app whose counts these are: the Fleet's Config.App,
	// else its Bridge's Audience; for a Fleet named by its Prefix alone
	// (bridgectl --prefix), the app that flushed last.
	App string `json:"app_name"`
	// SharedWith names the other apps that flushed counts under the same
	// prefix in the window: their counts are merged into this report.
	// Empty unless apps share a Prefix; give each its own.
	SharedWith []string      `json:"shared_with,omitempty"`
	Since      time.Time     `json:"since"`
	Totals     Totals        `json:"totals"`
	Routes     []RouteReport `json:"routes"`
	// DistinctSessions estimates (HyperLogLog) the distinct legacy
	// sessions seen in the window's days: sessions still in use.
	DistinctSessions int64 `json:"distinct_sessions"`
	// ReadyAfter is the period behind RouteReport.ReadyToSwitch.
	ReadyAfter time.Duration `json:"-"`
}

// Report reads the hourly counts from since (clamped to the retention; zero
// for all of it) to now. Each route's mode is the one the attached Bridge
// runs it in; without a Bridge (bridgectl), the run-time override, else
// the mode the instances last published. Public is set from the attached
// Bridge's PublicRoutes only.
func (f *Fleet) Report(ctx context.Context, since time.Time) (*Report, error) {
	var modes map[string]bridge.Mode
	var public []string
	if b := f.b.Load(); b != nil {
		modes = routeModes(b)
		public = b.Config().PublicRoutes
	}
	k, err := f.keys()
	if err != nil {
		return nil, err
	}
	now := f.now().UTC()
	oldest := now.Add(-f.cfg.Retention).Truncate(time.Hour)
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
	var effective, overrides, dual, apps *redis.MapStringStringCmd
	_, err = f.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range hours {
			hourCmds[i] = p.HGetAll(ctx, k.hour(h))
		}
		if len(days) > 0 { // none when since is in the future: PFCOUNT needs a key
			pf = p.PFCount(ctx, days...)
		}
		effective = p.HGetAll(ctx, k.effective())
		overrides = p.HGetAll(ctx, k.modes())
		dual = p.HGetAll(ctx, k.dual())
		apps = p.HGetAll(ctx, k.apps())
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("fleet: read report: %w", err)
	}

	rep := &Report{GeneratedAt: now, Scope: ScopeFleet, App: f.app(), Since: since, Routes: []RouteReport{}}
	flushed := appsSince(apps.Val(), since)
	if rep.App == "" && len(flushed) > 0 {
		rep.App = flushed[0] // named by its Prefix alone: the app that flushed last
	}
	for _, a := range flushed {
		if a != rep.App {
			rep.SharedWith = append(rep.SharedWith, a)
		}
	}
	if pf != nil {
		rep.DistinctSessions = pf.Val()
	}
	rep.ReadyAfter = f.cfg.ReadyAfter
	byRoute := map[string]*RouteReport{}
	route := func(name string) *RouteReport {
		r := byRoute[name]
		if r == nil {
			r = &RouteReport{Route: name, Hourly: make([]HourCounts, len(hours))}
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
				s, ok := bridge.ParseSource(parts[3])
				if !ok {
					continue
				}
				r := route(parts[1])
				r.Counts.Add(s, n)
				r.Hourly[i].Counts.Add(s, n)
			case parts[0] == fieldConverted && len(parts) == 2:
				route(parts[1]).Converted += n
			case parts[0] == fieldRetired && len(parts) == 2:
				route(parts[1]).Retired += n
			case parts[0] == fieldGuests && len(parts) == 2:
				route(parts[1]).GuestSessions += n
			case parts[0] == fieldReads && len(parts) == 2:
				route(parts[1]).HandlerSessionReads += n
			case parts[0] == fieldRejection && len(parts) == 3:
				if reason, ok := bridge.ParseReason(parts[2]); ok {
					route(parts[1]).Rejections.Add(reason, n)
				}
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
				m, _ = bridge.ParseMode(s)
			} else {
				m, _ = bridge.ParseMode(effective.Val()[name])
			}
		}
		r.Mode = m.String()
		r.Public = slices.Contains(public, name)
		r.SessionShare = r.Counts.SessionShare()
		r.ReadyToSwitch, r.ReadyReason = readiness(m, r.Hourly, dualSince(dual.Val()[name]), now, rep.ReadyAfter)
		rep.add(*r)
	}
	rep.sortRoutes()
	return rep, nil
}

// appsSince lists the apps of a fleet's apps hash (app → unix seconds of
// its last flush) that flushed at or after since, the latest first.
func appsSince(apps map[string]string, since time.Time) []string {
	type flushed struct {
		app string
		at  int64
	}
	var fs []flushed
	for app, v := range apps {
		at, err := strconv.ParseInt(v, 10, 64)
		if err == nil && at >= since.Unix() {
			fs = append(fs, flushed{app, at})
		}
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].at != fs[j].at {
			return fs[i].at > fs[j].at
		}
		return fs[i].app < fs[j].app
	})
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.app
	}
	return out
}

// add appends a route to the report and adds its counts to the totals.
func (rep *Report) add(r RouteReport) {
	for s, n := range r.Counts.All() {
		rep.Totals.Add(s, n)
	}
	rep.Totals.Converted += r.Converted
	rep.Totals.Retired += r.Retired
	rep.Routes = append(rep.Routes, r)
}

// sortRoutes sorts the routes by name.
func (rep *Report) sortRoutes() {
	sort.Slice(rep.Routes, func(i, j int) bool { return rep.Routes[i].Route < rep.Routes[j].Route })
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
func (f *Fleet) ReportHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since, err := sinceParam(r, f.now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := f.Report(r.Context(), since)
		if errors.Is(err, errUnnamed) {
			http.Error(w, "report unavailable: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if err != nil {
			f.log().Warn("fleet: report unavailable", "error", err)
			http.Error(w, "report unavailable: redis did not answer", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, rep)
	})
}

// writeJSON answers with rep as indented JSON, never cached.
func writeJSON(w http.ResponseWriter, rep *Report) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
}
