package bridge

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gorilla/mux"
)

// walked is what a walk of a gorilla/mux router finds.
type walked struct {
	// served are the routes that serve requests, in the router's order:
	// not a subrouter's route (its prefix), a route whose handler is a
	// router (a mount) or a PathPrefix without a handler (an empty
	// subrouter's, most likely). A Path without a handler yet is one: an
	// app declares the bridge's own routes before New gives their
	// handlers.
	served []servedRoute
	// matched holds, for the walked router and each router mounted in it,
	// the routes a request is matched against, in mux's order, with
	// subrouters flattened (a subrouter's routes carry its matchers).
	matched map[*mux.Router][]matchedRoute
	// prefixes are the templates of subrouters' and mounts' routes.
	prefixes []string
}

type servedRoute struct {
	route *mux.Route
	tmpl  string // as written
}

// matchedRoute is a route of a mounted router with the literal start of
// its path template: a request whose path does not start with it cannot
// match, which spares a regular expression.
type matchedRoute struct {
	route *mux.Route
	lit   string
}

// newMatchedRoute finds route's literal start: the template up to its
// first variable, without a trailing slash (StrictSlash makes it
// optional), and none if it holds a '%' (with UseEncodedPath, mux matches
// the escaped path; a literal without '%' starts it only if it starts the
// path).
func newMatchedRoute(route *mux.Route) matchedRoute {
	tmpl, _ := route.GetPathTemplate()
	lit, _, _ := strings.Cut(tmpl, "{")
	lit = strings.TrimRight(lit, "/")
	if strings.Contains(lit, "%") {
		lit = ""
	}
	return matchedRoute{route, lit}
}

// walkRouter walks root, subrouters and mounted routers included.
func walkRouter(root *mux.Router) walked {
	w := walked{matched: map[*mux.Router][]matchedRoute{}}
	type visit struct {
		route *mux.Route
		in    *mux.Router // the router whose matching reaches route
	}
	var visits []visit
	in := map[*mux.Router]*mux.Router{root: root}
	routerOf := map[*mux.Route]*mux.Router{}
	subrouted := map[*mux.Route]bool{}
	_ = root.Walk(func(route *mux.Route, router *mux.Router, ancestors []*mux.Route) error {
		if _, seen := routerOf[route]; seen {
			return nil // a router mounted twice
		}
		d, ok := in[router]
		if !ok && len(ancestors) > 0 {
			parent := ancestors[len(ancestors)-1]
			if h, _ := parent.GetHandler().(*mux.Router); h == router {
				d = router // mounted: it matches on its own
			} else {
				d = in[routerOf[parent]]
				subrouted[parent] = true
			}
			in[router] = d
		}
		routerOf[route] = router
		visits = append(visits, visit{route, d})
		return nil
	})
	for _, v := range visits {
		tmpl, err := v.route.GetPathTemplate()
		if subrouted[v.route] {
			if err == nil {
				w.prefixes = append(w.prefixes, tmpl)
			}
			continue
		}
		w.matched[v.in] = append(w.matched[v.in], newMatchedRoute(v.route))
		h := v.route.GetHandler()
		_, mount := h.(*mux.Router)
		re, _ := v.route.GetPathRegexp()
		switch {
		case err != nil:
		case mount || h == nil && !strings.HasSuffix(re, "$"):
			w.prefixes = append(w.prefixes, tmpl)
		default:
			w.served = append(w.served, servedRoute{v.route, tmpl})
		}
	}
	return w
}

// check reports the entries of Config.Routes and Config.PublicRoutes (as
// written) that name no route the walk found, with the closest routes.
func (w walked) check(routes Routes, public []string) error {
	known := map[string]bool{RouteUnmatched: true}
	var labels []string
	for _, s := range w.served {
		if label := RouteLabel(s.tmpl); !known[label] {
			known[label] = true
			labels = append(labels, label)
		}
	}
	var errs []error
	unknown := func(field, tmpl string) {
		label := RouteLabel(tmpl)
		if known[label] {
			return
		}
		what := "names no route of Config.Router"
		if slices.ContainsFunc(w.prefixes, func(p string) bool { return RouteLabel(p) == label }) {
			what = "is the prefix of a subrouter or mounted router, not a route"
		}
		errs = append(errs, fmt.Errorf("bridge: %s: %q %s (closest: %s)", field, tmpl, what, closest(label, labels, 3)))
	}
	for _, tmpl := range public {
		unknown("Config.PublicRoutes", tmpl)
	}
	for _, tmpl := range slices.Sorted(maps.Keys(routes)) {
		unknown("Config.Routes", tmpl)
	}
	return errors.Join(errs...)
}

// duplicates describes the labels that routes share where a request could
// match more than one of them (their methods overlap): such routes share
// counters and a mode. GET and POST of one template are not duplicates.
func (w walked) duplicates() []string {
	byLabel := map[string][]servedRoute{}
	var order []string
	for _, s := range w.served {
		label := RouteLabel(s.tmpl)
		if byLabel[label] == nil {
			order = append(order, label)
		}
		byLabel[label] = append(byLabel[label], s)
	}
	var out []string
	for _, label := range order {
		routes := byLabel[label]
		for i, a := range routes {
			if slices.ContainsFunc(routes[i+1:], func(b servedRoute) bool { return methodsOverlap(a.route, b.route) }) {
				var tmpls []string
				for _, s := range routes {
					tmpls = append(tmpls, s.tmpl)
				}
				out = append(out, fmt.Sprintf("%s (%d routes: %s)", label, len(routes), strings.Join(tmpls, ", ")))
				break
			}
		}
	}
	return out
}

// methodsOverlap reports whether a request method could match both
// routes (a route without Methods matches every method).
func methodsOverlap(a, b *mux.Route) bool {
	ma, errA := a.GetMethods()
	mb, errB := b.GetMethods()
	if errA != nil || errB != nil {
		return true
	}
	return slices.ContainsFunc(ma, func(m string) bool { return slices.Contains(mb, m) })
}

// closest returns up to n of labels nearest to label, quoted: first those
// sharing the most leading path segments, then by edit distance.
func closest(label string, labels []string, n int) string {
	if len(labels) == 0 {
		return "the router has no routes"
	}
	type scored struct {
		label    string
		segments int
		distance int
	}
	all := make([]scored, 0, len(labels))
	for _, l := range labels {
		all = append(all, scored{l, sharedSegments(label, l), editDistance(label, l)})
	}
	slices.SortFunc(all, func(a, b scored) int {
		return cmp.Or(cmp.Compare(b.segments, a.segments), cmp.Compare(a.distance, b.distance), strings.Compare(a.label, b.label))
	})
	var out []string
	for _, s := range all[:min(n, len(all))] {
		out = append(out, fmt.Sprintf("%q", s.label))
	}
	return strings.Join(out, ", ")
}

// sharedSegments counts the leading path segments a and b share.
func sharedSegments(a, b string) int {
	sa, sb := strings.Split(strings.Trim(a, "/"), "/"), strings.Split(strings.Trim(b, "/"), "/")
	n := 0
	for n < len(sa) && n < len(sb) && sa[n] == sb[n] && sa[n] != "" {
		n++
	}
	return n
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
