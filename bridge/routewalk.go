package bridge

import (
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
			continue
		}
		w.matched[v.in] = append(w.matched[v.in], newMatchedRoute(v.route))
		h := v.route.GetHandler()
		_, mount := h.(*mux.Router)
		re, _ := v.route.GetPathRegexp()
		switch {
		case err != nil:
		case mount || h == nil && !strings.HasSuffix(re, "$"):
		default:
			w.served = append(w.served, servedRoute{v.route, tmpl})
		}
	}
	return w
}
