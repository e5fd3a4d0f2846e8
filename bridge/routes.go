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
	RouteUnmatched = "unmatched" // requests that matched no mux route
	RouteOther     = "other"     // routes beyond MaxRoutes
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

// lookup returns the index of r's route: its gorilla/mux path template,
// or else the net/http.ServeMux pattern that matched it.
func (t *routeTable) lookup(r *http.Request) int {
	tmpl := r.Pattern
	if route := mux.CurrentRoute(r); route != nil {
		var err error
		if tmpl, err = route.GetPathTemplate(); err != nil {
			return idxUnmatched
		}
	}
	if tmpl == "" {
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
