package bridge

import (
	"net/http"
	"slices"
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
	// maxMountDepth bounds the routers mounted in routers that lookup
	// follows (and so a router mounted in itself).
	maxMountDepth = 8
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
	// mounts holds, for each router mounted as a route's handler, the
	// routes it matches a request against, in its order.
	mounts  atomic.Pointer[map[*mux.Router][]matchedRoute]
	matches sync.Pool // *mux.RouteMatch for matching mounted routes
}

func newRouteTable(config Routes, def Mode) *routeTable {
	t := &routeTable{def: def, config: config}
	m := map[string]int{}
	t.index.Store(&m)
	mounts := map[*mux.Router][]matchedRoute{}
	t.mounts.Store(&mounts)
	t.matches.New = func() any { return new(mux.RouteMatch) }
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

// lookup returns the index of r's route: its gorilla/mux path template
// (inside a router mounted as the route's handler, the template of the
// route that router matches), or else the net/http.ServeMux pattern that
// matched it.
func (t *routeTable) lookup(r *http.Request) int {
	tmpl := r.Pattern
	if route := mux.CurrentRoute(r); route != nil {
		if inner, ok := route.GetHandler().(*mux.Router); ok {
			if route = t.mounted(inner, r); route == nil {
				return idxUnmatched
			}
		}
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

// mounted returns the route that router, mounted as a route's handler,
// serves r with (following routers mounted in it), or nil.
func (t *routeTable) mounted(router *mux.Router, r *http.Request) *mux.Route {
	for range maxMountDepth {
		route := t.matchMounted(router, r)
		if route == nil {
			return nil
		}
		inner, ok := route.GetHandler().(*mux.Router)
		if !ok {
			return route
		}
		router = inner
	}
	return nil
}

// matchMounted matches r against the routes router had when it was
// learnt (by New's walk, or the first time a request reached it), one by
// one with a pooled match as router.Match would: no allocation but
// mux's own for the matched route's variables, and none of the app's
// middleware built. A request none of them matches (a 404 or 405 of
// router's) is matched by router itself, in case a route was added since:
// router is learnt again if so.
func (t *routeTable) matchMounted(router *mux.Router, r *http.Request) *mux.Route {
	routes, ok := (*t.mounts.Load())[router]
	if !ok {
		routes = t.learn(router)
	}
	if route := t.firstMatch(routes, r); route != nil {
		return route
	}
	var m mux.RouteMatch
	if !router.Match(r, &m) || m.MatchErr != nil || m.Route == nil {
		return nil
	}
	if !slices.ContainsFunc(routes, func(k matchedRoute) bool { return k.route == m.Route }) {
		t.learn(router)
	}
	return m.Route
}

// firstMatch returns the first of routes that matches r, as mux would.
func (t *routeTable) firstMatch(routes []matchedRoute, r *http.Request) *mux.Route {
	match := t.matches.Get().(*mux.RouteMatch)
	var found *mux.Route
	for _, m := range routes {
		if strings.HasPrefix(r.URL.Path, m.lit) && m.route.Match(r, match) {
			found = m.route
			break
		}
	}
	vars := match.Vars
	clear(vars) // holds pieces of r's path
	*match = mux.RouteMatch{Vars: vars}
	t.matches.Put(match)
	return found
}

// learn walks router, mounted as a route's handler, and records the routes
// of every router the walk finds. It returns router's.
func (t *routeTable) learn(router *mux.Router) []matchedRoute {
	w := walkRouter(router)
	t.remember(w)
	return w.matched[router]
}

// remember records what a walk found: the mounted routers' routes and the
// routes' labels.
func (t *routeTable) remember(w walked) {
	t.mu.Lock()
	old := *t.mounts.Load()
	m := make(map[*mux.Router][]matchedRoute, len(old)+len(w.matched))
	for k, v := range old {
		m[k] = v
	}
	for k, v := range w.matched {
		m[k] = v
	}
	t.mounts.Store(&m)
	t.mu.Unlock()
	for _, s := range w.served {
		t.add(s.tmpl)
	}
}

func (t *routeTable) mode(i int) Mode {
	if m := t.modes[i].Load(); m != noOverride {
		return Mode(m)
	}
	return t.base[i]
}
