package bridge

import (
	"fmt"
	"strings"
)

// Mode is how a route treats credentials.
type Mode uint8

// Modes, in the order of a migration.
const (
	// Legacy observes only: it identifies and counts the credential, never
	// converts and never refuses a request.
	Legacy Mode = iota
	// Dual accepts a JWT or a session, and converts session-only requests
	// into JWT cookies (subject to the rollout percentage).
	Dual
	// JWT accepts JWTs only: a session-only request gets 401.
	JWT
	numModes
)

var modeNames = [numModes]string{"legacy", "dual", "jwt"}

// String returns legacy, dual or jwt.
func (m Mode) String() string {
	if m < numModes {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses legacy, dual or jwt.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("bridge: unknown mode %q (want legacy, dual or jwt)", s)
}

// CheckRouteMode reports whether route can be given mode m: m must be a
// mode, and route a route label (a mux path template or a ServeMux
// pattern, such as "/api/orders/{id}" or "GET /api/me", or
// RouteUnmatched). Bridge.SetMode and the fleet's run-time modes both
// check with it.
func CheckRouteMode(route string, m Mode) error {
	if m >= numModes {
		return fmt.Errorf("bridge: invalid mode %v", m)
	}
	if route == RouteUnmatched || strings.Contains(route, "/") {
		return nil
	}
	return fmt.Errorf("bridge: route %q: want a mux path template such as /api/me", route)
}

// Routes maps gorilla/mux path templates (such as "/api/orders/{id}") to
// their mode.
type Routes map[string]Mode

// ParseRoutes parses "template=mode,template=mode,..." as in the demo's
// BRIDGE_MODES. Spaces around items are ignored; an empty string is an
// empty map.
func ParseRoutes(s string) (Routes, error) {
	routes := Routes{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		tmpl, mode, ok := strings.Cut(item, "=")
		tmpl = strings.TrimSpace(tmpl)
		if !ok || !strings.HasPrefix(tmpl, "/") {
			return nil, fmt.Errorf("bridge: route item %q: want /path/template=mode", item)
		}
		m, err := ParseMode(mode)
		if err != nil {
			return nil, fmt.Errorf("bridge: route %q: %w", tmpl, err)
		}
		if _, dup := routes[tmpl]; dup {
			return nil, fmt.Errorf("bridge: route %q named twice", tmpl)
		}
		routes[tmpl] = m
	}
	return routes, nil
}
