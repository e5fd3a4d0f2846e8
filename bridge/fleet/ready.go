package fleet

import (
	"strconv"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// readiness says whether a route that runs in mode m is ready to switch
// to jwt, and why: it must have run in dual mode on every instance since
// dualSince (zero: not recorded) for at least period, and its requests
// over the last period must have been authenticated, none by a session.
// Only hours the bridge saw in dual count: an hour before it existed is
// no evidence that nobody uses a session. Counts are hourly, so the
// period's first hour counts whole (an early session request is never
// forgiven).
func readiness(m bridge.Mode, hourly []HourCounts, dualSince, now time.Time, period time.Duration) (bool, string) {
	switch {
	case m == bridge.Legacy:
		return false, "legacy mode: move it to dual first"
	case m == bridge.JWT:
		return false, "already in jwt mode"
	case m != bridge.Dual:
		return false, "mode unknown"
	case dualSince.IsZero():
		return false, "not observed in dual mode yet"
	}
	in := now.Sub(dualSince)
	if in < period {
		return false, "observed in dual for only " + span(in) + " of " + span(period)
	}
	from := now.Add(-period)
	last := " in the last " + span(period)
	if len(hourly) == 0 || hourly[0].Hour.After(from) {
		return false, "the report's window is shorter than " + span(period)
	}
	var sessions, authenticated uint64
	for _, h := range hourly {
		if h.Hour.Add(time.Hour).Before(from) {
			continue
		}
		sessions += h.Counts.Of(bridge.SourceSession)
		authenticated += h.Counts.Authenticated()
	}
	switch {
	case sessions == 1:
		return false, "1 session request" + last
	case sessions > 1:
		return false, strconv.FormatUint(sessions, 10) + " session requests" + last
	case authenticated == 0:
		return false, "no authenticated traffic" + last
	}
	return true, "ready: in dual for " + span(in) + ", no session request" + last
}

// dualSince parses a field of the dual clock (unix seconds); zero when
// there is none or it is not a number.
func dualSince(v string) time.Time {
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil || s <= 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// span writes a duration for a reason: seconds under a minute ("40s"),
// else as the dashboard does ("45m", "3h", "2d 6h").
func span(d time.Duration) string {
	if d < time.Minute {
		return strconv.Itoa(int(max(d, 0)/time.Second)) + "s"
	}
	return formatSpan(d)
}
