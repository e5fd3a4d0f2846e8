package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
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

// Collector returns a Prometheus collector that reads the bridge's
// counters at scrape time: sessionbridge_requests_total{route,mode,source},
// sessionbridge_conversions_total{route},
// sessionbridge_rejections_total{route,reason}, and the health of the fleet
// flush. Config.Registerer registers it in New; use this to register it
// elsewhere.
func (b *Bridge) Collector() prometheus.Collector { return collector{b} }

type collector struct{ b *Bridge }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descConversions
	ch <- descRetired
	ch <- descRejections
	if c.b.flusher != nil {
		ch <- descFlushed
		ch <- descFlushErrors
		ch <- descFlushPending
		ch <- descDropped
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, rc := range c.b.Snapshot() {
		for m := range rc.Requests {
			for s, n := range rc.Requests[m] {
				if n == 0 {
					continue
				}
				ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n),
					rc.Route, Mode(m).String(), Source(s).String())
			}
		}
		if rc.Conversions > 0 {
			ch <- prometheus.MustNewConstMetric(descConversions, prometheus.CounterValue, float64(rc.Conversions), rc.Route)
		}
		if rc.Retired > 0 {
			ch <- prometheus.MustNewConstMetric(descRetired, prometheus.CounterValue, float64(rc.Retired), rc.Route)
		}
		for r, n := range rc.Rejections {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(descRejections, prometheus.CounterValue, float64(n), rc.Route, Reason(r).String())
			}
		}
	}
	f := c.b.flusher
	if f == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descFlushed, prometheus.CounterValue, float64(f.flushed.Load()))
	ch <- prometheus.MustNewConstMetric(descFlushErrors, prometheus.CounterValue, float64(f.errors.Load()))
	ch <- prometheus.MustNewConstMetric(descFlushPending, prometheus.GaugeValue, float64(f.pendingCount.Load()))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(f.droppedSIDs.Load()), "session_hash")
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(f.lostOnClose.Load()), "request")
}
