package fleet

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
)

//go:embed templates/dashboard.html
var dashboardFS embed.FS

// dashboardTmpl is parsed once, at package load; it is never changed.
var dashboardTmpl = template.Must(template.New("dashboard.html").
	Funcs(template.FuncMap{"count": formatCount, "short": newShortCount, "segments": routeSegments}).
	ParseFS(dashboardFS, "templates/dashboard.html"))

// dashboardCSP forbids everything but inline styles and local images: the
// page needs no script, no font, no fetch.
const dashboardCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"

// Shape of the dashboard.
const (
	trendHours    = 48 // hours of the hourly trend, the most recent
	trendWidth    = 156
	trendHeight   = 40
	trendPad      = 3
	topRejections = 3
)

// DashboardHandler serves the fleet-wide report as an HTML page: totals,
// and per route its mode, counts by source, session share, conversions,
// top rejection reasons, an hourly trend and a "ready to switch to jwt"
// hint. The routes that need attention come first (most first), then the
// quiet ones; public routes are folded away in a section of their own.
// ?since= narrows the window as in ReportHandler. The page has no script
// and is served with a strict Content-Security-Policy. Mount it behind
// admin authentication in production.
func (f *Fleet) DashboardHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			writeDashboardError(w, r, http.StatusMethodNotAllowed, "Use GET.")
			return
		}
		since, err := sinceParam(r, f.now())
		if err != nil {
			writeDashboardError(w, r, http.StatusBadRequest, "Bad ?since=: "+err.Error()+".")
			return
		}
		rep, err := f.Report(r.Context(), since)
		if errors.Is(err, errUnnamed) {
			writeDashboardError(w, r, http.StatusInternalServerError, "The Fleet has no app: set fleet.Config.App (or Prefix), or give it to bridge.Config.Fleet.")
			return
		}
		if err != nil {
			f.log().Warn("fleet: dashboard unavailable", "error", err)
			h.Set("Retry-After", "5")
			writeDashboardError(w, r, http.StatusServiceUnavailable,
				"The migration report is unavailable: Redis did not answer. Try again in a few seconds.")
			return
		}
		var buf bytes.Buffer
		if err := dashboardTmpl.Execute(&buf, newDashboardView(rep, r.URL.Query().Get("since"))); err != nil {
			f.log().Error("fleet: render dashboard", "error", err)
			writeDashboardError(w, r, http.StatusInternalServerError, "The dashboard could not be rendered.")
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(buf.Bytes())
		}
	})
}

// writeDashboardError answers with a short HTML page.
func writeDashboardError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	var buf bytes.Buffer
	data := struct {
		Status int
		Text   string
		Msg    string
	}{status, http.StatusText(status), msg}
	if err := dashboardTmpl.ExecuteTemplate(&buf, "error", data); err != nil {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// dashboardView is what the template renders: every number already
// formatted, so that the template holds no arithmetic.
type dashboardView struct {
	GeneratedAt      time.Time
	Since            time.Time
	Window           string
	Totals           totalsView
	DistinctSessions uint64
	Share            shareView // fleet-wide session share
	ReadyAfter       string
	TrendHours       int
	Attention        []routeView // attention(r) > 0, most first
	Quiet            []routeView // attention(r) == 0, by route
	Public           []routeView // Public, folded away; most attention first
	Presets          []presetView
}

type shareView struct {
	Value string // data-share: 0.6
	Width string // CSS width: 60.0%
	Text  string // 60%
	Auth  bool   // some request was authenticated
}

// countsView names the counts of each source for the template.
type countsView struct {
	Session, JWTCookie, JWTBearer, App, Anonymous, Rejected uint64
}

func newCountsView(c bridge.SourceCounts) countsView {
	return countsView{
		Session:   c.Of(bridge.SourceSession),
		JWTCookie: c.Of(bridge.SourceJWTCookie),
		JWTBearer: c.Of(bridge.SourceJWTBearer),
		App:       c.Of(bridge.SourceApp),
		Anonymous: c.Of(bridge.SourceAnonymous),
		Rejected:  c.Of(bridge.SourceRejected),
	}
}

type totalsView struct {
	countsView
	Converted, Retired uint64
}

type routeView struct {
	Route      string
	Mode       string
	Public     bool
	Attention  uint64 // attention(r)
	ReadyAfter string
	Counts     countsView
	Converted  uint64
	Retired    uint64
	Guests     uint64 // guest sessions
	Reads      uint64 // handler session reads
	// GuestsDominate flags guest sessions as many as the session
	// requests: the claims mapping probably misses the app's user key.
	GuestsDominate bool
	Share          shareView
	Rejections     []reasonView
	More           []reasonView // beyond the top ones
	Trend          trendView
	Ready          bool
	Reason         string // why it is ready or not (ReadyReason)
}

type reasonView struct {
	Reason string
	Count  uint64
}

type trendView struct {
	Hours      int
	From, To   time.Time
	Session    string // polyline points
	JWT        string // polyline points
	SessionSum uint64
	JWTSum     uint64
	Max        uint64
	Width      int
	Height     int
}

type presetView struct {
	Label, Since string
	Active       bool
}

// newDashboardView prepares rep for the template; since is the request's
// raw ?since=, to mark the active preset.
func newDashboardView(rep *Report, since string) dashboardView {
	v := dashboardView{
		GeneratedAt:      rep.GeneratedAt.UTC(),
		Since:            rep.Since.UTC(),
		Window:           formatSpan(rep.GeneratedAt.Sub(rep.Since)),
		Totals:           totalsView{newCountsView(rep.Totals.SourceCounts), rep.Totals.Converted, rep.Totals.Retired},
		DistinctSessions: uint64(max(rep.DistinctSessions, 0)),
		Share:            newShareView(rep.Totals.SourceCounts),
		ReadyAfter:       formatSpan(rep.ReadyAfter),
		TrendHours:       trendHours,
	}
	for _, p := range []struct{ label, since string }{{"24 h", "24h"}, {"7 days", "168h"}, {"all", ""}} {
		v.Presets = append(v.Presets, presetView{Label: p.label, Since: p.since, Active: p.since == since})
	}
	for _, r := range rep.Routes {
		if (r.Route == bridge.RouteUnmatched || r.Route == bridge.RouteOther) && idle(r) {
			continue // pseudo-routes matter only when something landed there
		}
		rv := routeView{
			Route:      r.Route,
			Mode:       r.Mode,
			Public:     r.Public,
			Attention:  attention(r),
			ReadyAfter: v.ReadyAfter,
			Counts:     newCountsView(r.Counts),
			Converted:  r.Converted,
			Retired:    r.Retired,
			Guests:     r.GuestSessions,
			Reads:      r.HandlerSessionReads,
			Share:      newShareView(r.Counts),
			Trend:      newTrendView(r.Hourly),
			Ready:      r.ReadyToSwitch,
			Reason:     r.ReadyReason,
		}
		rv.GuestsDominate = r.GuestSessions > 0 && r.GuestSessions >= r.Counts.Of(bridge.SourceSession)
		rv.Rejections = sortedReasons(r.Rejections)
		if len(rv.Rejections) > topRejections {
			rv.More = rv.Rejections[topRejections:]
			rv.Rejections = rv.Rejections[:topRejections]
		}
		switch {
		case r.Public:
			v.Public = append(v.Public, rv)
		case rv.Attention > 0:
			v.Attention = append(v.Attention, rv)
		default:
			v.Quiet = append(v.Quiet, rv)
		}
	}
	for _, rs := range [][]routeView{v.Attention, v.Quiet, v.Public} {
		slices.SortStableFunc(rs, func(a, b routeView) int {
			return cmp.Or(cmp.Compare(b.Attention, a.Attention), strings.Compare(a.Route, b.Route))
		})
	}
	return v
}

// attention scores how much a route needs an operator's eye: the dashboard
// lists routes by it, highest first, and a route at 0 is quiet. It sums
// counts of what still ties the route to the legacy session or goes wrong
// on it, one term a line. A request refused for carrying no credential at
// all (no_credentials) is anonymous traffic and does not count.
func attention(r RouteReport) uint64 {
	var score uint64
	for _, n := range [...]uint64{
		r.Counts.Of(bridge.SourceSession),  // requests authenticated by a legacy session
		r.Counts.Of(bridge.SourceRejected), // requests whose credential was refused
		r.GuestSessions,                    // live sessions the claims mapping found no user in
		r.HandlerSessionReads,              // handlers still reading the session
	} {
		score += n
	}
	return score
}

// routeSegments cuts a route template before each "/" but a leading one,
// so that the page can wrap a long template between its segments.
func routeSegments(route string) []string {
	var out []string
	for len(route) > 1 {
		i := strings.IndexByte(route[1:], '/')
		if i < 0 {
			break
		}
		out = append(out, route[:i+1])
		route = route[i+1:]
	}
	return append(out, route)
}

func idle(r RouteReport) bool {
	for range r.Rejections.All() {
		return false
	}
	return r.Counts.Total()+r.Converted == 0
}

func newShareView(c bridge.SourceCounts) shareView {
	s := c.SessionShare()
	return shareView{
		Value: strconv.FormatFloat(s, 'f', -1, 64),
		Width: strconv.FormatFloat(s*100, 'f', 1, 64) + "%",
		Text:  strings.TrimSuffix(strconv.FormatFloat(s*100, 'f', 1, 64), ".0") + "%",
		Auth:  c.Authenticated() > 0,
	}
}

func sortedReasons(c bridge.ReasonCounts) []reasonView {
	var out []reasonView
	for reason, n := range c.All() {
		out = append(out, reasonView{reason.String(), n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

// newTrendView draws the last trendHours hours as two polylines, session
// and JWT (cookie + bearer), on a common scale.
func newTrendView(hourly []HourCounts) trendView {
	if len(hourly) > trendHours {
		hourly = hourly[len(hourly)-trendHours:]
	}
	t := trendView{Hours: len(hourly), Width: trendWidth, Height: trendHeight}
	if len(hourly) == 0 {
		return t
	}
	t.From, t.To = hourly[0].Hour.UTC(), hourly[len(hourly)-1].Hour.UTC()
	for _, h := range hourly {
		c := newCountsView(h.Counts)
		jwt := c.JWTCookie + c.JWTBearer
		t.SessionSum += c.Session
		t.JWTSum += jwt
		t.Max = max(t.Max, c.Session, jwt)
	}
	var session, jwt strings.Builder
	for i, h := range hourly {
		c := newCountsView(h.Counts)
		t.point(&session, i, len(hourly), c.Session)
		t.point(&jwt, i, len(hourly), c.JWTCookie+c.JWTBearer)
	}
	t.Session, t.JWT = session.String(), jwt.String()
	return t
}

func (t *trendView) point(sb *strings.Builder, i, n int, v uint64) {
	x := float64(t.Width) / 2
	if n > 1 {
		x = float64(i) * float64(t.Width) / float64(n-1)
	}
	y := float64(t.Height - trendPad)
	if t.Max > 0 {
		y -= float64(v) / float64(t.Max) * float64(t.Height-2*trendPad)
	}
	if sb.Len() > 0 {
		sb.WriteByte(' ')
	}
	sb.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
	sb.WriteByte(',')
	sb.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
}

// formatSpan writes a duration in hours below two days, else in days and
// hours: "45m", "24h", "8d", "2d 6h".
func formatSpan(d time.Duration) string {
	h := int(d / time.Hour)
	switch {
	case h < 1:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case h < 48:
		return strconv.Itoa(h) + "h"
	case h%24 == 0:
		return strconv.Itoa(h/24) + "d"
	}
	return strconv.Itoa(h/24) + "d " + strconv.Itoa(h%24) + "h"
}

// shortFrom is the least count the routes' table shortens.
const shortFrom = 100_000

// shortCount is a count as the routes' table shows it: Text, and the
// exact count in Exact when Text is shortened.
type shortCount struct{ Text, Exact string }

// newShortCount writes n below shortFrom as formatCount does, else in
// three significant digits with a k, M, B or T suffix, cut rather than
// rounded so that it never overstates: 123k, 1.2M; 12,345,678 is 12.3M.
func newShortCount(n uint64) shortCount {
	if n < shortFrom {
		return shortCount{Text: formatCount(n)}
	}
	unit, suffix := uint64(1_000), "k"
	for _, u := range []struct {
		unit   uint64
		suffix string
	}{{1_000_000, "M"}, {1_000_000_000, "B"}, {1_000_000_000_000, "T"}} {
		if n >= u.unit {
			unit, suffix = u.unit, u.suffix
		}
	}
	whole := n / unit
	text := formatCount(whole)
	if whole < 100 {
		// The fraction's first three digits, zero-padded, cut to make
		// three significant digits with the whole part.
		frac := strconv.FormatUint(1000+n%unit/(unit/1000), 10)[1 : 4-len(text)]
		if frac = strings.TrimRight(frac, "0"); frac != "" {
			text += "." + frac
		}
	}
	return shortCount{Text: text + suffix, Exact: formatCount(n)}
}

// formatCount writes n with thousands separators: 12,345.
func formatCount(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
