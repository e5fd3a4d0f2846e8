package bridge

import (
	"net/http"
	"sort"
	"strings"
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

// RouteLabel returns the label a route is counted and given a mode under:
// its mux path template without the variables' patterns
// ("/posts/{page:[0-9]+}" is "/posts/{page}"). Other routes are unchanged.
func RouteLabel(route string) string {
	if !strings.Contains(route, ":") {
		return route
	}
	var b strings.Builder
	level, start := 0, 0
	for i := 0; i < len(route); i++ {
		switch route[i] {
		case '{':
			if level == 0 {
				b.WriteString(route[start:i])
				start = i
			}
			level++
		case '}':
			if level--; level < 0 {
				return route // unbalanced: not a mux template
			}
			if level == 0 {
				name, _, _ := strings.Cut(route[start:i], ":")
				b.WriteString(name) // with its "{"
				b.WriteByte('}')
				start = i + 1
			}
		}
	}
	if level != 0 {
		return route
	}
	b.WriteString(route[start:])
	return b.String()
}

// routeTable gives each route a fixed index into the counters. Lookups are
// lock-free and allocation-free; a route seen for the first time (one not
// walked at start) is added under a mutex, once.
type routeTable struct {
	mu sync.Mutex
	// index holds each route under its label and under its template as
	// written, so that a request's template needs no rewriting.
	index  atomic.Pointer[map[string]int]
	names  [MaxRoutes]string // labels
	n      atomic.Int32
	base   [MaxRoutes]Mode          // mode from the configuration
	modes  [MaxRoutes]atomic.Uint32 // run-time override, or noOverride
	def    Mode
	config Routes // by label
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

// add registers a route by its template (or pattern) and returns its
// index (idxOther when full).
func (t *routeTable) add(tmpl string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.index.Load()
	if i, ok := old[tmpl]; ok {
		return i
	}
	label := RouteLabel(tmpl)
	i, ok := old[label]
	n := int(t.n.Load())
	if !ok && n >= MaxRoutes {
		return idxOther
	}
	m := make(map[string]int, len(old)+2)
	for k, v := range old {
		m[k] = v
	}
	if !ok {
		i = n
		t.names[i] = label
		mode, ok := t.config[label]
		if !ok {
			mode = t.def
		}
		t.base[i] = mode
		t.modes[i].Store(noOverride)
		t.n.Store(int32(i + 1))
		m[label] = i
	}
	m[tmpl] = i
	t.index.Store(&m)
	return i
}

// find returns the index of a route named by its label or its template.
func (t *routeTable) find(route string) (int, bool) {
	index := *t.index.Load()
	if i, ok := index[route]; ok {
		return i, true
	}
	i, ok := index[RouteLabel(route)]
	return i, ok
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
