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

// Routes maps mux path templates (such as "/api/orders/{id}") to modes.
type Routes map[string]Mode

// ParseRoutes parses "template=mode,template=mode,..." as in the demo's
// BRIDGE_MODES. Spaces around items are ignored; "" is an empty map.
func ParseRoutes(s string) (Routes, error) {
	routes := Routes{}
	for rest := s; rest != ""; {
		item := rest
		if i := indexOutsideBraces(rest, ','); i >= 0 {
			item, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		i := indexOutsideBraces(item, '=')
		if i < 0 || !strings.HasPrefix(strings.TrimSpace(item[:i]), "/") {
			return nil, fmt.Errorf("bridge: route item %q: want /path/template=mode", item)
		}
		tmpl, mode := strings.TrimSpace(item[:i]), item[i+1:]
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

// indexOutsideBraces returns the index of the first c in s outside
// braces, or -1: a variable's pattern such as {id:[0-9]{1,3}} may hold
// "," or "=".
func indexOutsideBraces(s string, c byte) int {
	level := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			level++
		case '}':
			level = max(level-1, 0)
		case c:
			if level == 0 {
				return i
			}
		}
	}
	return -1
}
