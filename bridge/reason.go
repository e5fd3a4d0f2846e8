package bridge

import (
	"errors"
	"slices"
)

// Reason is why a credential was refused (or a request noted): the label
// of the rejection counters.
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
	ReasonCookieDuplicate                  // several JWT cookies: none is trusted
	ReasonSessionRevoked                   // a session logged out through one of its tokens
	ReasonCookieOtherSession               // a JWT cookie of another session than the request's: the session decides
	ReasonSessionClaims                    // Config.ClaimsFromSession failed on a live session
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonBearerInvalid:      "bearer_invalid",
	ReasonBearerExpired:      "bearer_expired",
	ReasonBearerRevoked:      "bearer_revoked",
	ReasonCookieInvalid:      "jwt_cookie_invalid",
	ReasonCookieExpired:      "jwt_cookie_expired",
	ReasonCookieRevoked:      "jwt_cookie_revoked",
	ReasonSessionInvalid:     "session_invalid",
	ReasonSessionUnknown:     "session_unknown",
	ReasonSessionUndecodable: "session_undecodable",
	ReasonSessionOnJWT:       "session_on_jwt_route",
	ReasonStoreUnavailable:   "session_store_unavailable",
	ReasonCrossOrigin:        "cross_origin",
	ReasonNoCredentials:      "no_credentials",
	ReasonSubjectMismatch:    "subject_mismatch",
	ReasonCookieDuplicate:    "jwt_cookie_duplicate",
	ReasonSessionRevoked:     "session_revoked",
	ReasonCookieOtherSession: "jwt_cookie_other_session",
	ReasonSessionClaims:      "session_claims_error",
}

// String returns the reason's label, such as session_unknown.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// ParseReason parses a reason's label, as String writes it.
func ParseReason(s string) (Reason, bool) {
	i := slices.Index(reasonNames[:], s)
	return Reason(i), i >= 0
}

// tokenReasons gives the reason of a refused token by where it came from
// and why it was refused: invalid, expired or revoked.
var tokenReasons = [2]struct{ invalid, expired, revoked Reason }{
	fromBearer: {ReasonBearerInvalid, ReasonBearerExpired, ReasonBearerRevoked},
	fromCookie: {ReasonCookieInvalid, ReasonCookieExpired, ReasonCookieRevoked},
}

// Where a token came from.
const (
	fromBearer = 0
	fromCookie = 1
)

func tokenReason(err error, from int) Reason {
	rs := tokenReasons[from]
	switch {
	case errors.Is(err, ErrTokenExpired):
		return rs.expired
	case errors.Is(err, ErrTokenRevoked):
		return rs.revoked
	}
	return rs.invalid
}
