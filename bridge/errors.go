package bridge

import "errors"

// Sentinel errors. Errors returned or passed to Config.ErrorHandler wrap one
// of these with %w, so errors.Is works; the wrapping error says more.
var (
	// ErrNoCredentials: the request carried no credential on a route that
	// needs one.
	ErrNoCredentials = errors.New("bridge: no credentials")
	// ErrInvalidToken: a JWT was refused (malformed, bad signature, wrong
	// issuer or audience, forbidden header, ...).
	ErrInvalidToken = errors.New("bridge: invalid token")
	// ErrTokenExpired: a JWT is past its exp (plus leeway).
	ErrTokenExpired = errors.New("bridge: token expired")
	// ErrTokenRevoked: a JWT's jti or sid was revoked (logout).
	ErrTokenRevoked = errors.New("bridge: token revoked")
	// ErrSessionInvalid: the legacy session cookie failed verification.
	ErrSessionInvalid = errors.New("bridge: session cookie invalid")
	// ErrSessionNotFound: the legacy session cookie names no live session.
	ErrSessionNotFound = errors.New("bridge: session not found")
	// ErrNoSession: the request has no legacy session cookie.
	ErrNoSession = errors.New("bridge: no session cookie")
	// ErrStoreUnavailable: the session store could not answer in time.
	ErrStoreUnavailable = errors.New("bridge: session store unavailable")
	// ErrSessionUndecodable: the stored session values cannot be decoded
	// (for gob, usually a type the app did not register; the wrapped error
	// names it).
	ErrSessionUndecodable = errors.New("bridge: session values undecodable")
	// ErrSessionOnJWTRoute: a session-only request on a route in jwt mode.
	ErrSessionOnJWTRoute = errors.New("bridge: session not accepted on this route")
	// ErrCrossOrigin: a cookie-authenticated unsafe request from another
	// origin (CSRF).
	ErrCrossOrigin = errors.New("bridge: cross-origin request refused")
)
