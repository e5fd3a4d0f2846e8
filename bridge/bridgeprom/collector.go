// Package bridgeprom exports the counts of a sessionbridge Bridge, and the
// health of its fleet's counter flush, to Prometheus. It is the only
// package of the library that imports client_golang.
//
//	reg.MustRegister(bridgeprom.NewCollector(b, f)) // f may be nil
package bridgeprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
)

var (
	descRequests = prometheus.NewDesc("sessionbridge_requests_total",
		"Requests by route (mux path template), mode and credential source.",
		[]string{"route", "mode", "source"}, nil)
	descConversions = prometheus.NewDesc("sessionbridge_conversions_total",
		"Legacy sessions converted into JWT cookies, by route.",
		[]string{"route"}, nil)
	descRetired = prometheus.NewDesc("sessionbridge_retired_total",
		"Converted legacy sessions deleted from the store (Config.RetireSessions), by route.",
		[]string{"route"}, nil)
	descGuests = prometheus.NewDesc("sessionbridge_guest_sessions_total",
		"Live legacy sessions that named no user under the claims mapping, by route.",
		[]string{"route"}, nil)
	descHandlerReads = prometheus.NewDesc("sessionbridge_handler_session_reads_total",
		"Session reads made by the route's handlers through the store the bridge wraps, by route.",
		[]string{"route"}, nil)
	descRejections = prometheus.NewDesc("sessionbridge_rejections_total",
		"Refused credentials by route and reason.",
		[]string{"route", "reason"}, nil)
	descFlushed = prometheus.NewDesc("sessionbridge_flushed_requests_total",
		"Requests whose counts were applied to the fleet-wide counters in Redis.", nil, nil)
	descFlushErrors = prometheus.NewDesc("sessionbridge_flush_errors_total",
		"Failed attempts to flush the counters to Redis.", nil, nil)
	descFlushPending = prometheus.NewDesc("sessionbridge_flush_pending_requests",
		"Requests counted in a batch that Redis has not acknowledged yet.", nil, nil)
	descDropped = prometheus.NewDesc("sessionbridge_flush_dropped_total",
		"Counts dropped before reaching Redis, by kind: session_hash (past the distinct-sessions buffer), request (final flush failed at Close).",
		[]string{"kind"}, nil)
)

// NewCollector returns a Prometheus collector that reads b's counters at
// scrape time: sessionbridge_requests_total{route,mode,source},
// sessionbridge_conversions_total{route}, sessionbridge_retired_total{route},
// sessionbridge_guest_sessions_total{route},
// sessionbridge_handler_session_reads_total{route} and
// sessionbridge_rejections_total{route,reason}; with f, which may be
// nil, also the health of the fleet's counter flush
// (sessionbridge_flushed_requests_total, sessionbridge_flush_errors_total,
// sessionbridge_flush_pending_requests,
// sessionbridge_flush_dropped_total{kind}).
func NewCollector(b *bridge.Bridge, f *fleet.Fleet) prometheus.Collector {
	return collector{b, f}
}

type collector struct {
	b *bridge.Bridge
	f *fleet.Fleet
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descConversions
	ch <- descRetired
	ch <- descGuests
	ch <- descHandlerReads
	ch <- descRejections
	if c.f != nil {
		ch <- descFlushed
		ch <- descFlushErrors
		ch <- descFlushPending
		ch <- descDropped
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, rc := range c.b.Snapshot() {
		for m, sc := range rc.ByMode() {
			for s, n := range sc.All() {
				if n > 0 {
					ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n),
						rc.Route, m.String(), s.String())
				}
			}
		}
		if rc.Conversions > 0 {
			ch <- prometheus.MustNewConstMetric(descConversions, prometheus.CounterValue, float64(rc.Conversions), rc.Route)
		}
		for d, n := range map[*prometheus.Desc]uint64{descRetired: rc.Retired, descGuests: rc.Guests, descHandlerReads: rc.HandlerReads} {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), rc.Route)
			}
		}
		for r, n := range rc.Rejections.All() {
			ch <- prometheus.MustNewConstMetric(descRejections, prometheus.CounterValue, float64(n), rc.Route, r.String())
		}
	}
	if c.f == nil {
		return
	}
	st := c.f.Stats()
	ch <- prometheus.MustNewConstMetric(descFlushed, prometheus.CounterValue, float64(st.Flushed))
	ch <- prometheus.MustNewConstMetric(descFlushErrors, prometheus.CounterValue, float64(st.Errors))
	ch <- prometheus.MustNewConstMetric(descFlushPending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.DroppedSessionHashes), "session_hash")
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.LostOnClose), "request")
}
