package bridge

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Sentinel errors. Errors returned or passed to Config.ErrorHandler wrap one
// of these with %w, so errors.Is works; the wrapping error says more.
var (
	ErrNoCredentials      = errors.New("bridge: no credentials")                     // none on a route that needs one
	ErrInvalidToken       = errors.New("bridge: invalid token")                      // malformed, forged, wrong claims or header
	ErrTokenExpired       = errors.New("bridge: token expired")                      // past exp plus leeway
	ErrTokenRevoked       = errors.New("bridge: token revoked")                      // its jti or sid was revoked
	ErrSessionInvalid     = errors.New("bridge: session cookie invalid")             // the legacy cookie fails verification
	ErrSessionNotFound    = errors.New("bridge: session not found")                  // the legacy cookie names no live session
	ErrNoSession          = errors.New("bridge: no session cookie")                  // no legacy cookie
	ErrStoreUnavailable   = errors.New("bridge: session store unavailable")          // the store did not answer in time
	ErrSessionUndecodable = errors.New("bridge: session values undecodable")         // e.g. a gob type the app did not register
	ErrSessionOnJWTRoute  = errors.New("bridge: session not accepted on this route") // a session-only request in jwt mode
	ErrCrossOrigin        = errors.New("bridge: cross-origin request refused")       // CSRF
)

// Rejection is the error a refused request is answered with: the HTTP
// status, the counted reason and the cause.
type Rejection struct {
	Status int
	Reason Reason
	Err    error
}

func (e *Rejection) Error() string {
	if e.Err == nil {
		return e.Reason.String()
	}
	return e.Reason.String() + ": " + e.Err.Error()
}

// Unwrap returns the cause, which wraps one of the package's sentinels.
func (e *Rejection) Unwrap() error { return e.Err }

// WriteError, the default Config.ErrorHandler, answers {"error", "reason"}
// in JSON: 401 with WWW-Authenticate: Bearer, 403 cross-origin, 503 with
// Retry-After; it never echoes a credential.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	status, reason := http.StatusUnauthorized, "unauthorized"
	var rej *Rejection
	if errors.As(err, &rej) {
		status, reason = rej.Status, rej.Reason.String()
	}
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		if errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrTokenRevoked) {
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		} else {
			h.Set("WWW-Authenticate", "Bearer")
		}
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}{http.StatusText(status), reason})
}

// Caps of what the bridge logs from a request: an attacker-controlled
// string it quotes (an unverified issuer, a kid, a typ), and a whole
// error, so that no request can fill the logs.
const (
	maxLoggedValue = 64
	maxLoggedError = 256
)

// capped returns s cut to maxLoggedValue bytes, marked when cut; the log
// handler escapes it.
func capped(s string) string { return cut(s, maxLoggedValue) }

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
