package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
)

// reportOptions are the flags of bridgectl report.
type reportOptions struct {
	conn
	since      string
	json       bool
	retention  time.Duration
	readyAfter time.Duration
}

// reportFlags returns the flag set of bridgectl report, writing into o.
func reportFlags(o *reportOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	o.conn.register(fs)
	fs.StringVar(&o.since, "since", "", "start of the window: a `duration` back from now (24h) or an RFC 3339 time (default: the whole retention)")
	fs.BoolVar(&o.json, "json", false, "print the JSON of /migration/report.json instead of the table")
	fs.DurationVar(&o.retention, "retention", fleet.DefaultRetention, "the fleet's Config.Retention: the longest window")
	fs.DurationVar(&o.readyAfter, "ready-after", fleet.DefaultReadyAfter, "the fleet's Config.ReadyAfter: how long a dual route must see no session to be ready")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: bridgectl report --app NAME|--prefix P [--redis URL] [--since 24h|RFC3339] [--json]

Prints the fleet-wide migration report: requests per route by credential,
conversions, the share still authenticated by the legacy session, the dual
routes ready to switch to jwt and why the others are not (READY_REASON),
and the top reasons credentials were refused.

`)
		fs.PrintDefaults()
	}
	return fs
}

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var o reportOptions
	fs := reportFlags(&o)
	usage := func() { fs.SetOutput(stderr); fs.Usage() }
	pos, err := parseArgs(fs, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err == nil && len(pos) > 0 {
		err = usagef("unexpected argument %q", pos[0])
	}
	now := time.Now()
	var since time.Time
	if err == nil {
		since, err = parseSince(o.since, now)
	}
	if err == nil && o.retention > 0 && o.retention < time.Hour {
		err = usagef("--retention %v: shorter than an hour, which no fleet keeps", o.retention)
	}
	if err != nil {
		return fail(stderr, "report", err, usage)
	}
	f, rdb, err := o.fleet(ctx, getenv, fleet.Config{
		Retention:  positive(o.retention),
		ReadyAfter: positive(o.readyAfter),
		Now:        func() time.Time { return now }, // the window ends when the table says
	})
	if err != nil {
		return fail(stderr, "report", err, usage)
	}
	defer rdb.Close()

	rep, err := f.Report(ctx, since)
	if err != nil {
		return fail(stderr, "report", redact(err, o.url), usage)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = writeReport(stdout, rep, now)
	}
	if err != nil {
		return fail(stderr, "report", err, usage)
	}
	return exitOK
}

// positive is d, or 0 (the fleet's default) when d is not positive:
// --retention and --ready-after have always taken a value of zero or less
// as the default.
func positive(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d
}

// parseSince parses --since as the report handler parses ?since=: a
// positive duration back from now, or an RFC 3339 time. Empty is the zero
// time: the whole retention.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, usagef("--since %q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("--since %q: want a duration such as 24h or an RFC 3339 time", s)
	}
	if t.After(now) {
		return time.Time{}, usagef("--since %q is in the future", s)
	}
	return t, nil
}

// writeReport prints rep as a table, its totals and the distinct
// sessions.
func writeReport(w io.Writer, rep *fleet.Report, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tMODE\tSESSION\tJWT_COOKIE\tJWT_BEARER\tAPP\tANON\tREJECTED\tCONVERTED\tGUESTS\tHANDLER_READS\tSESSION_SHARE\tREADY\tTOP_REJECTIONS\tREADY_REASON")
	for _, r := range rep.Routes {
		ready := "-"
		if r.ReadyToSwitch {
			ready = "ready"
		}
		row(tw, r.Route, r.Mode, r.Counts, [3]uint64{r.Converted, r.GuestSessions, r.HandlerSessionReads}, ready, topReasons(r.Rejections), cmp.Or(r.ReadyReason, "-"))
	}
	var guests, reads uint64
	for _, r := range rep.Routes {
		guests, reads = guests+r.GuestSessions, reads+r.HandlerSessionReads
	}
	row(tw, "TOTAL", "", rep.Totals.SourceCounts, [3]uint64{rep.Totals.Converted, guests, reads})
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "\napp: %s\n", cmp.Or(rep.App, "-")); err != nil {
		return err
	}
	if len(rep.SharedWith) > 0 {
		if _, err := fmt.Fprintf(w, "warning: apps %s flushed counts under the same prefix: the counts above are theirs too; give each app its own fleet.Config.Prefix\n",
			strings.Join(rep.SharedWith, ", ")); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "distinct sessions: %d\nwindow: %s to %s (UTC); ready = dual on every instance for the last %s, with authenticated requests and no session request\n",
		rep.DistinctSessions, rep.Since.Format(time.RFC3339), now.UTC().Format(time.RFC3339), rep.ReadyAfter)
	return err
}

// row writes one line of the table: the counts (other: converted, guest
// sessions, handler reads), then the cells after SESSION_SHARE (READY,
// TOP_REJECTIONS, READY_REASON); the TOTAL line has none and ends at
// SESSION_SHARE, unpadded.
func row(tw io.Writer, route, mode string, c bridge.SourceCounts, other [3]uint64, rest ...string) {
	var tail string
	for _, cell := range rest {
		tail += "\t" + cell
	}
	fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s%s\n",
		route, mode, c.Of(bridge.SourceSession), c.Of(bridge.SourceJWTCookie), c.Of(bridge.SourceJWTBearer), c.Of(bridge.SourceApp),
		c.Of(bridge.SourceAnonymous), c.Of(bridge.SourceRejected), other[0], other[1], other[2], share(c), tail)
}

// share is the session share as a percentage, "-" when no request was
// authenticated (there is no share to speak of).
func share(c bridge.SourceCounts) string {
	if c.Authenticated() == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*c.SessionShare(), 'f', 1, 64) + "%"
}

// topRejections is how many reasons a route's TOP_REJECTIONS names, as
// the dashboard's "Top rejections" does.
const topRejections = 3

// topReasons is the TOP_REJECTIONS cell: the most frequent reasons with
// their counts, most frequent first (ties by name), then how many other
// reasons there were: "bearer_invalid 3, session_unknown 1, +2 more";
// "-" when no credential was refused.
func topReasons(c bridge.ReasonCounts) string {
	type reasonCount struct {
		name string
		n    uint64
	}
	var rs []reasonCount
	for r, n := range c.All() {
		rs = append(rs, reasonCount{r.String(), n})
	}
	if len(rs) == 0 {
		return "-"
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].n != rs[j].n {
			return rs[i].n > rs[j].n
		}
		return rs[i].name < rs[j].name
	})
	var b strings.Builder
	for i, r := range rs[:min(len(rs), topRejections)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.name + " " + strconv.FormatUint(r.n, 10))
	}
	if more := len(rs) - topRejections; more > 0 {
		b.WriteString(", +" + strconv.Itoa(more) + " more")
	}
	return b.String()
}
