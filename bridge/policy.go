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

// Reason is why a credential was refused (or, for SubjectMismatch, why a
// request was noted). Reasons are the label values of the rejection
// counters.
type Reason uint8

// Reasons.
const (
	ReasonBearerInvalid      Reason = iota // bearer token malformed, forged or with wrong claims
	ReasonBearerExpired                    // bearer token past exp
	ReasonBearerRevoked                    // bearer token logged out
	ReasonCookieInvalid                    // JWT cookie malformed, forged or with wrong claims
	ReasonCookieExpired                    // JWT cookie past exp
	ReasonCookieRevoked                    // JWT cookie logged out
	ReasonSessionInvalid                   // legacy cookie fails verification
	ReasonSessionUnknown                   // legacy cookie names no live session
	ReasonSessionUndecodable               // stored session values cannot be decoded
	ReasonSessionOnJWT                     // a session on a jwt route
	ReasonStoreUnavailable                 // the session store did not answer
	ReasonCrossOrigin                      // CSRF check failed
	ReasonNoCredentials                    // nothing presented on a dual or jwt route
	ReasonSubjectMismatch                  // bearer and cookie name different subjects (bearer wins)
	numReasons
)

var reasonNames = [numReasons]string{
	"bearer_invalid", "bearer_expired", "bearer_revoked",
	"jwt_cookie_invalid", "jwt_cookie_expired", "jwt_cookie_revoked",
	"session_invalid", "session_unknown", "session_undecodable", "session_on_jwt_route",
	"session_store_unavailable", "cross_origin", "no_credentials",
	"subject_mismatch",
}

// String returns the reason's label, such as session_unknown.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}
