package fleet

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// instanceReadyReason is the ReadyReason of a dual route in an instance
// report: readiness is judged on hours, which only Redis keeps.
const instanceReadyReason = "one instance's counts, with no hours: readiness needs a Fleet (Redis)"

// InstanceReport is the report of one Bridge's in-process counts
// (b.Snapshot), for an app that runs without a Fleet, that is without
// Redis: Scope is ScopeInstance, App the Bridge's Audience, Since when the
// Bridge began counting
// (b.CountsSince) and GeneratedAt is now on the Bridge's clock. It has no
// hourly counts, so no route is ready to switch (ReadyReason says why),
// and DistinctSessions is 0 (distinct sessions are counted in Redis).
// Routes are every route the Bridge knows, unmatched and other only once
// counted, as in the fleet's report.
func InstanceReport(b *bridge.Bridge) *Report {
	rep := &Report{
		GeneratedAt: b.Config().Now().UTC(),
		Scope:       ScopeInstance,
		App:         b.Config().Audience,
		Since:       b.CountsSince().UTC(),
		Routes:      []RouteReport{},
	}
	for _, rc := range b.Snapshot() {
		r := RouteReport{
			Route:      rc.Route,
			Mode:       rc.Mode.String(),
			Counts:     rc.Requests(),
			Converted:  rc.Conversions,
			Retired:    rc.Retired,
			Rejections: rc.Rejections,
		}
		if (r.Route == bridge.RouteUnmatched || r.Route == bridge.RouteOther) && idle(r) {
			continue
		}
		r.SessionShare = r.Counts.SessionShare()
		if rc.Mode == bridge.Dual {
			r.ReadyReason = instanceReadyReason
		} else {
			_, r.ReadyReason = readiness(rc.Mode, nil, time.Time{}, rep.GeneratedAt, 0)
		}
		rep.add(r)
	}
	rep.sortRoutes()
	return rep
}

// InstanceReportHandler serves InstanceReport(b) as JSON, the way
// Fleet.ReportHandler serves the fleet's, for an app without a Fleet. The
// in-process counts have no hours: a ?since= after the Bridge began
// counting is refused (400), an earlier one changes nothing. Mount it
// behind admin authentication in production.
func InstanceReportHandler(b *bridge.Bridge) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since, err := sinceParam(r, b.Config().Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if start := b.CountsSince(); since.After(start) {
			http.Error(w, fmt.Sprintf("since: this instance's counts, kept in memory without hours, start at %s: a narrower window needs a Fleet (Redis)",
				start.UTC().Format(time.RFC3339)), http.StatusBadRequest)
			return
		}
		writeJSON(w, InstanceReport(b))
	})
}
