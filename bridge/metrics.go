package bridge

import (
	"net/http"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/gorilla/mux"
)

// Route labels that are not path templates.
const (
	// RouteUnmatched labels requests that matched no mux route.
	RouteUnmatched = "unmatched"
	// RouteOther labels routes beyond MaxRoutes.
	RouteOther = "other"
)

// MaxRoutes bounds the number of distinct route labels (and so the
// counters' memory and the metrics' cardinality).
const MaxRoutes = 1024

const (
	idxUnmatched = 0
	idxOther     = 1
	noOverride   = ^uint32(0)
)

// routeTable gives each route a fixed index into the counters. Lookups are
// lock-free and allocation-free; a route seen for the first time (one not
// walked at start) is added under a mutex, once.
type routeTable struct {
	mu     sync.Mutex
	index  atomic.Pointer[map[string]int]
	names  [MaxRoutes]string
	n      atomic.Int32
	base   [MaxRoutes]Mode          // mode from the configuration
	modes  [MaxRoutes]atomic.Uint32 // run-time override, or noOverride
	def    Mode
	config Routes
}

func newRouteTable(config Routes, def Mode) *routeTable {
	t := &routeTable{def: def, config: config}
	m := map[string]int{}
	t.index.Store(&m)
	t.add(RouteUnmatched)
	t.add(RouteOther)
	names := make([]string, 0, len(config))
	for tmpl := range config {
		names = append(names, tmpl)
	}
	sort.Strings(names)
	for _, tmpl := range names {
		t.add(tmpl)
	}
	return t
}

// add registers a route and returns its index (idxOther when full).
func (t *routeTable) add(tmpl string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.index.Load()
	if i, ok := old[tmpl]; ok {
		return i
	}
	n := int(t.n.Load())
	if n >= MaxRoutes {
		return idxOther
	}
	m := make(map[string]int, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[tmpl] = n
	t.names[n] = tmpl
	mode, ok := t.config[tmpl]
	if !ok {
		mode = t.def
	}
	t.base[n] = mode
	t.modes[n].Store(noOverride)
	t.n.Store(int32(n + 1))
	t.index.Store(&m)
	return n
}

// lookup returns the index of r's mux route.
func (t *routeTable) lookup(r *http.Request) int {
	route := mux.CurrentRoute(r)
	if route == nil {
		return idxUnmatched
	}
	tmpl, err := route.GetPathTemplate()
	if err != nil {
		return idxUnmatched
	}
	if i, ok := (*t.index.Load())[tmpl]; ok {
		return i
	}
	return t.add(tmpl)
}

func (t *routeTable) mode(i int) Mode {
	if m := t.modes[i].Load(); m != noOverride {
		return Mode(m)
	}
	return t.base[i]
}

// walk registers every path template of router.
func (t *routeTable) walk(router *mux.Router) {
	_ = router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if tmpl, err := route.GetPathTemplate(); err == nil {
			t.add(tmpl)
		}
		return nil
	})
}

// counters are the in-process counts, one atomic per (route, mode,
// source), per route for conversions and per (route, reason).
type counters struct {
	requests    [MaxRoutes * int(numModes) * int(numSources)]atomic.Uint64
	conversions [MaxRoutes]atomic.Uint64
	retired     [MaxRoutes]atomic.Uint64
	rejections  [MaxRoutes * int(numReasons)]atomic.Uint64
}

func (c *counters) request(route int, m Mode, s Source) {
	c.requests[(route*int(numModes)+int(m))*int(numSources)+int(s)].Add(1)
}

func (c *counters) reject(route int, r Reason) {
	c.rejections[route*int(numReasons)+int(r)].Add(1)
}

// RouteCounts are the counts of one route since start.
type RouteCounts struct {
	Route string
	// Mode is the route's current mode.
	Mode Mode
	// Requests counts requests per mode they were served in and source.
	Requests [numModes][numSources]uint64
	// Conversions counts sessions converted into JWT cookies.
	Conversions uint64
	// Retired counts converted sessions deleted (Config.RetireSessions).
	Retired uint64
	// Rejections counts refused credentials per reason.
	Rejections [numReasons]uint64
}

// BySource sums the requests of all modes per source.
func (rc RouteCounts) BySource() [numSources]uint64 {
	var out [numSources]uint64
	for m := range rc.Requests {
		for s, n := range rc.Requests[m] {
			out[s] += n
		}
	}
	return out
}

// Snapshot returns the in-process counts of every route known so far, in
// the order routes were registered.
func (b *Bridge) Snapshot() []RouteCounts {
	t, c := b.routes, b.counters
	n := int(t.n.Load())
	out := make([]RouteCounts, n)
	for i := 0; i < n; i++ {
		rc := &out[i]
		rc.Route, rc.Mode = t.names[i], t.mode(i)
		for m := 0; m < int(numModes); m++ {
			for s := 0; s < int(numSources); s++ {
				rc.Requests[m][s] = c.requests[(i*int(numModes)+m)*int(numSources)+s].Load()
			}
		}
		rc.Conversions = c.conversions[i].Load()
		rc.Retired = c.retired[i].Load()
		for r := 0; r < int(numReasons); r++ {
			rc.Rejections[r] = c.rejections[i*int(numReasons)+r].Load()
		}
	}
	return out
}
