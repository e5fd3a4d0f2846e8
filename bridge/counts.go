package bridge

import (
	"encoding/json"
	"fmt"
	"iter"
	"sync/atomic"
	"time"
)

// counters are the in-process counts, one atomic per (route, mode,
// source), per route for conversions and per (route, reason).
type counters struct {
	requests    [MaxRoutes * int(numModes) * int(numSources)]atomic.Uint64
	conversions [MaxRoutes]atomic.Uint64
	retired     [MaxRoutes]atomic.Uint64
	rejections  [MaxRoutes * int(numReasons)]atomic.Uint64
	// guests counts live sessions naming no user; guestLogged says one
	// was logged.
	guests      [MaxRoutes]atomic.Uint64
	guestLogged [MaxRoutes]atomic.Bool
	// handlerReads counts the session reads of handlers (WrapStore).
	handlerReads [MaxRoutes]atomic.Uint64
	since        time.Time // when counting began (New)
}

func (c *counters) request(route int, m Mode, s Source) {
	c.requests[(route*int(numModes)+int(m))*int(numSources)+int(s)].Add(1)
}

func (c *counters) reject(route int, r Reason) {
	c.rejections[route*int(numReasons)+int(r)].Add(1)
}

// SourceCounts are request counts by Source. Its JSON form has every
// source's label: {"anonymous": 0, "session": 0, ...}.
type SourceCounts struct{ n [numSources]uint64 }

// Of returns the count of s.
func (c SourceCounts) Of(s Source) uint64 {
	if s < numSources {
		return c.n[s]
	}
	return 0
}

// Add adds n to the count of s; an unknown source is ignored.
func (c *SourceCounts) Add(s Source, n uint64) {
	if s < numSources {
		c.n[s] += n
	}
}

// All yields every source with its count, in the order of the sources.
func (c SourceCounts) All() iter.Seq2[Source, uint64] {
	return func(yield func(Source, uint64) bool) {
		for s, n := range c.n {
			if !yield(Source(s), n) {
				return
			}
		}
	}
}

// Total is the number of requests counted.
func (c SourceCounts) Total() uint64 {
	var t uint64
	for _, n := range c.n {
		t += n
	}
	return t
}

// Authenticated is the number of requests a credential authenticated.
func (c SourceCounts) Authenticated() uint64 {
	return c.n[SourceSession] + c.n[SourceJWTCookie] + c.n[SourceJWTBearer]
}

// SessionShare is session / (session + jwt_cookie + jwt_bearer); 0 when no
// request was authenticated.
func (c SourceCounts) SessionShare() float64 {
	if a := c.Authenticated(); a > 0 {
		return float64(c.n[SourceSession]) / float64(a)
	}
	return 0
}

// jsonSourceOrder is the order of the sources in JSON, the report's:
// credentials first.
var jsonSourceOrder = [numSources]Source{SourceSession, SourceJWTCookie, SourceJWTBearer, SourceApp, SourceAnonymous, SourceRejected}

// MarshalJSON writes every source's count under its label.
func (c SourceCounts) MarshalJSON() ([]byte, error) {
	var n [numSources]uint64
	var names [numSources]string
	for i, s := range jsonSourceOrder {
		n[i], names[i] = c.n[s], sourceNames[s]
	}
	return marshalCounts(n[:], names[:], false), nil
}

// UnmarshalJSON reads counts by label, ignoring unknown ones.
func (c *SourceCounts) UnmarshalJSON(data []byte) error {
	return unmarshalCounts(data, c.n[:], sourceNames[:])
}

// ReasonCounts are refusal counts by Reason. Its JSON form has the label
// of every reason seen: {"bearer_invalid": 3}.
type ReasonCounts struct{ n [numReasons]uint64 }

// Of returns the count of r.
func (c ReasonCounts) Of(r Reason) uint64 {
	if r < numReasons {
		return c.n[r]
	}
	return 0
}

// Add adds n to the count of r; an unknown reason is ignored.
func (c *ReasonCounts) Add(r Reason, n uint64) {
	if r < numReasons {
		c.n[r] += n
	}
}

// All yields every reason seen with its count.
func (c ReasonCounts) All() iter.Seq2[Reason, uint64] {
	return func(yield func(Reason, uint64) bool) {
		for r, n := range c.n {
			if n > 0 && !yield(Reason(r), n) {
				return
			}
		}
	}
}

// MarshalJSON writes the count of every reason seen under its label.
func (c ReasonCounts) MarshalJSON() ([]byte, error) {
	return marshalCounts(c.n[:], reasonNames[:], true), nil
}

// UnmarshalJSON reads counts by label, ignoring unknown ones.
func (c *ReasonCounts) UnmarshalJSON(data []byte) error {
	return unmarshalCounts(data, c.n[:], reasonNames[:])
}

func marshalCounts(n []uint64, names []string, nonZero bool) []byte {
	out := []byte{'{'}
	for i, v := range n {
		if nonZero && v == 0 {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = fmt.Appendf(out, "%q:%d", names[i], v)
	}
	return append(out, '}')
}

func unmarshalCounts(data []byte, n []uint64, names []string) error {
	var m map[string]uint64
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("bridge: counts: %w", err)
	}
	for i, name := range names {
		n[i] = m[name]
	}
	return nil
}

// RouteCounts are the in-process counts of one route since start.
type RouteCounts struct {
	Route        string // RouteLabel of the mux path template, ServeMux pattern, RouteUnmatched or RouteOther
	Mode         Mode   // the current mode
	Conversions  uint64 // sessions converted into JWT cookies
	Retired      uint64 // converted sessions deleted (Config.RetireSessions)
	Guests       uint64 // live sessions that named no user (counted anonymous)
	HandlerReads uint64 // session reads of its handlers (WrapStore): what still needs sessions
	Rejections   ReasonCounts

	byMode [numModes]SourceCounts
}

// Requests are the route's requests by source, over all modes.
func (rc RouteCounts) Requests() SourceCounts {
	var out SourceCounts
	for _, c := range rc.byMode {
		for s, n := range c.n {
			out.n[s] += n
		}
	}
	return out
}

// ByMode yields the route's requests by source for each mode.
func (rc RouteCounts) ByMode() iter.Seq2[Mode, SourceCounts] {
	return func(yield func(Mode, SourceCounts) bool) {
		for m, c := range rc.byMode {
			if !yield(Mode(m), c) {
				return
			}
		}
	}
}

// CountsSince returns when the Bridge began counting (New, on its clock).
func (b *Bridge) CountsSince() time.Time { return b.counters.since }

// Snapshot returns the in-process counts of every route known, in order.
func (b *Bridge) Snapshot() []RouteCounts {
	t, c := b.routes, b.counters
	n := int(t.n.Load())
	out := make([]RouteCounts, n)
	for i := range n {
		rc := &out[i]
		rc.Route, rc.Mode = t.names[i], t.mode(i)
		for m := range int(numModes) {
			for s := range int(numSources) {
				rc.byMode[m].n[s] = c.requests[(i*int(numModes)+m)*int(numSources)+s].Load()
			}
		}
		rc.Conversions = c.conversions[i].Load()
		rc.Retired = c.retired[i].Load()
		rc.Guests = c.guests[i].Load()
		rc.HandlerReads = c.handlerReads[i].Load()
		for r := range int(numReasons) {
			rc.Rejections.n[r] = c.rejections[i*int(numReasons)+r].Load()
		}
	}
	return out
}
