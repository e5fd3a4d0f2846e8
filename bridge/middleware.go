package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Rejection is the error a refused request is answered with: the HTTP
// status, the counted reason and the cause.
type Rejection struct {
	Status int
	Reason Reason
	Err    error
}

func (e *Rejection) Error() string { return e.Reason.String() + ": " + e.Err.Error() }

// Unwrap returns the cause, which wraps one of the package's sentinels.
func (e *Rejection) Unwrap() error { return e.Err }

// WriteError is the default Config.ErrorHandler: a short JSON body
// {"error": ..., "reason": ...}; 401 with WWW-Authenticate: Bearer, 403 for
// a cross-origin request, 503 with Retry-After when the session store is
// unavailable. It never echoes a credential.
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

// Middleware authenticates each request by the mode of its route and
// counts it; handlers read the result with IdentityFrom. Use it with
// router.Use so that mux.CurrentRoute is set. It only returns a closure:
// gorilla/mux rebuilds the chain on every request.
func (b *Bridge) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.serve(w, r, next)
	})
}

// exchange is the state of one request through the middleware.
type exchange struct {
	b        *Bridge
	w        http.ResponseWriter
	r        *http.Request
	route    int
	mode     Mode
	now      time.Time
	rejected bool   // a credential was presented and refused
	last     Reason // the last reason counted
	lastErr  error
	// clearJWT asks for the JWT cookie to be cleared; setJWT records that
	// a new one was set. The clearing is written once, before the answer,
	// and only if no new cookie replaced it.
	clearJWT bool
	setJWT   bool
}

func (b *Bridge) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	x := exchange{b: b, w: w, r: r, route: b.routes.lookup(r), now: b.cfg.Now()}
	x.mode = b.routes.mode(x.route)
	id, ok := x.authenticate()
	if !ok {
		return
	}
	if id == nil {
		if x.mode != Legacy {
			reason, err := ReasonNoCredentials, error(ErrNoCredentials)
			if x.rejected {
				reason, err = x.last, x.lastErr
			} else {
				b.counters.reject(x.route, reason)
			}
			x.fail(http.StatusUnauthorized, reason, err, false)
			return
		}
		source := SourceAnonymous
		if x.rejected {
			source = SourceRejected
		}
		b.counters.request(x.route, x.mode, source)
		x.writeCookies()
		next.ServeHTTP(w, r)
		return
	}
	b.counters.request(x.route, x.mode, id.Source)
	x.writeCookies()
	next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
}

// writeCookies clears the JWT cookie if it was refused or outlived its
// session and no new one was set in its place.
func (x *exchange) writeCookies() {
	if x.clearJWT && !x.setJWT {
		x.b.clearCookie(x.w, x.b.cfg.CookieName)
		x.clearJWT = false
	}
}

// authenticate establishes the request's identity (nil: none). It returns
// false when it has answered the request itself.
func (x *exchange) authenticate() (*Identity, bool) {
	b := x.b
	var id *Identity
	var tokenEntry *cacheEntry // the token that authenticated, if any

	// 1. Authorization: Bearer.
	if tok, ok := bearerToken(x.r); ok {
		e, err := b.verifier.verifyAt(tok, x.now)
		if err != nil {
			reason := tokenReason(err, ReasonBearerInvalid)
			x.note(reason, err)
			if x.mode != Legacy {
				x.fail(http.StatusUnauthorized, reason, err, true)
				return nil, false
			}
		} else {
			id, tokenEntry = &e.bearer, e
		}
	}

	// 2. The JWT cookie.
	var cookieEntry *cacheEntry
	if tok := cookieValue(x.r, b.cfg.CookieName); tok != "" {
		e, err := b.verifier.verifyAt(tok, x.now)
		switch {
		case err != nil:
			if id == nil {
				x.note(tokenReason(err, ReasonCookieInvalid), err)
			}
			if x.mode != Legacy {
				x.clearJWT = true
			}
		case id != nil:
			if e.claims.Subject != id.Subject {
				b.counters.reject(x.route, ReasonSubjectMismatch)
				b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: bearer and cookie name different subjects; bearer wins",
					slog.String("route", b.routes.names[x.route]))
			}
		default:
			id, cookieEntry, tokenEntry = &e.cookie, e, e
		}
	}

	sessionCookie := b.cfg.Sessions != nil && cookieValue(x.r, b.cfg.Sessions.CookieName()) != ""

	// CSRF: unsafe methods authenticated (or to be) by a cookie.
	if x.mode != Legacy && !isSafe(x.r.Method) && (id == nil || id.Source == SourceJWTCookie) &&
		(cookieEntry != nil || sessionCookie || x.rejected) {
		if err := b.cfg.CrossOrigin.Check(x.r); err != nil {
			err = errors.Join(ErrCrossOrigin, err)
			x.note(ReasonCrossOrigin, err)
			x.fail(http.StatusForbidden, ReasonCrossOrigin, err, true)
			return nil, false
		}
	}

	if id != nil {
		switch {
		case tokenEntry != nil && sessionCookie && b.cfg.RetireSessions:
			x.retireBehindToken(tokenEntry)
		case cookieEntry != nil && x.mode == Dual && sessionCookie && x.nearExpiry(cookieEntry.claims):
			x.refresh(cookieEntry)
		}
		return id, true
	}

	// 3. The legacy session, only when no JWT authenticated.
	if !sessionCookie {
		return nil, true
	}
	if x.mode == JWT {
		x.note(ReasonSessionOnJWT, ErrSessionOnJWTRoute)
		return nil, true
	}
	sess, err := b.cfg.Sessions.Load(x.r)
	if err != nil {
		return nil, x.sessionFailed(err)
	}
	sid := b.sids.sid(sess.ID)
	c, err := b.cfg.ClaimsFromSession(sess.Values)
	if err != nil || c.Subject == "" {
		// A guest session (a cart before login): it authenticates nobody.
		return nil, true
	}
	id = &Identity{Source: SourceSession, Session: sess.Values, sid: sid,
		Subject: c.Subject, Name: c.Name, Roles: c.Roles}
	if b.flusher != nil {
		b.flusher.observeSession(sid)
	}
	if x.mode == Dual && b.sids.inRollout(sess.ID, int(b.rollout.Load())) {
		x.convert(sess, id)
	}
	return id, true
}

// sessionFailed handles a failed session load; it returns false when it has
// answered the request.
func (x *exchange) sessionFailed(err error) bool {
	switch {
	case errors.Is(err, ErrNoSession):
		// Only called when the request has a non-empty session cookie: one
		// that net/http could not parse is a credential refused.
		x.note(ReasonSessionInvalid, fmt.Errorf("%w: cookie cannot be parsed", ErrSessionInvalid))
		return true
	case errors.Is(err, ErrSessionInvalid):
		x.note(ReasonSessionInvalid, err)
		return true
	case errors.Is(err, ErrSessionNotFound):
		x.note(ReasonSessionUnknown, err)
		if x.mode != Legacy && cookieValue(x.r, x.b.cfg.CookieName) != "" {
			x.clearJWT = true
		}
		return true
	case errors.Is(err, ErrSessionUndecodable):
		x.note(ReasonSessionUndecodable, err)
		if x.mode == Legacy {
			return true
		}
		x.fail(http.StatusInternalServerError, ReasonSessionUndecodable, err, false)
		return false
	default:
		if !errors.Is(err, ErrStoreUnavailable) {
			err = errors.Join(ErrStoreUnavailable, err)
		}
		x.note(ReasonStoreUnavailable, err)
		if x.mode == Legacy {
			return true
		}
		x.fail(http.StatusServiceUnavailable, ReasonStoreUnavailable, err, false)
		return false
	}
}

// convert mints a JWT from the session and sets it as the JWT cookie.
func (x *exchange) convert(sess *Session, id *Identity) {
	b := x.b
	tok, c, err := b.mintFor(sess.Values, sess.TTL, id.sid, x.now)
	if err != nil {
		b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: session not converted",
			slog.String("route", b.routes.names[x.route]), slog.String("error", err.Error()))
		return
	}
	if b.setTokenCookie(x.w, tok, c.ExpiresAt.Time, x.now) {
		x.setJWT = true
	}
	id.Claims, id.Token, id.ExpiresAt = c, tok, c.ExpiresAt.Time
	id.Subject, id.Name, id.Roles = c.Subject, c.Name, c.Roles
	b.counters.conversions[x.route].Add(1)
	if b.cfg.RetireSessions {
		x.retire(sess)
	}
}

// retire deletes a converted session from the store and expires its
// cookie: the user now holds a JWT. A store that cannot delete it leaves it
// to expire on its own.
func (x *exchange) retire(sess *Session) {
	b := x.b
	if err := b.cfg.Sessions.Delete(x.r.Context(), sess); err != nil {
		b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: converted session not retired",
			slog.String("route", b.routes.names[x.route]), slog.String("error", err.Error()))
		return
	}
	b.clearCookie(x.w, b.cfg.Sessions.CookieName())
	b.counters.retired[x.route].Add(1)
}

// retireBehindToken retires the legacy session still sent alongside a
// valid JWT (a user converted before retirement was turned on):
// once per browser, since its cookie is expired here. The session is
// deleted only when the token was minted from it (same sid; never for a
// token without sid, such as an IdP's); the cookie is expired in any case:
// with retirement on, the JWT is the credential. A
// store that cannot answer changes nothing, to try again later.
func (x *exchange) retireBehindToken(e *cacheEntry) {
	b := x.b
	sess, err := b.cfg.Sessions.Load(x.r)
	switch {
	case err == nil:
		if e.claims.SID != "" && e.claims.SID == b.sids.sid(sess.ID) {
			x.retire(sess)
			return
		}
	case errors.Is(err, ErrStoreUnavailable):
		return
	}
	b.clearCookie(x.w, b.cfg.Sessions.CookieName())
}

// nearExpiry reports whether a token is in the last quarter of its life.
func (x *exchange) nearExpiry(c *Claims) bool {
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return false
	}
	life := c.ExpiresAt.Sub(c.IssuedAt.Time)
	return c.ExpiresAt.Sub(x.now) < life/4
}

// refresh re-mints a JWT cookie near its expiry while its session lives,
// and clears it when the session is gone. A store that cannot answer
// changes nothing: the token is still valid.
func (x *exchange) refresh(e *cacheEntry) {
	b := x.b
	// Only tokens the bridge minted from a session slide with it: a token
	// of another issuer, or one set from a bearer token, has no session
	// of ours to follow (and must not turn into the session's user).
	if e.claims.SID == "" || e.claims.Issuer != b.cfg.Issuer {
		return
	}
	sess, err := b.cfg.Sessions.Load(x.r)
	switch {
	case err == nil:
		sid := b.sids.sid(sess.ID)
		if e.claims.SID != sid {
			return // another session: it converts on its own
		}
		tok, c, err := b.mintFor(sess.Values, sess.TTL, sid, x.now)
		if err == nil && b.setTokenCookie(x.w, tok, c.ExpiresAt.Time, x.now) {
			x.setJWT = true
		}
	case errors.Is(err, ErrSessionNotFound):
		x.clearJWT = true
	}
}

// note counts a refused credential and logs why (never the credential).
func (x *exchange) note(reason Reason, err error) {
	x.rejected, x.last, x.lastErr = true, reason, err
	x.b.counters.reject(x.route, reason)
	x.b.log.LogAttrs(x.r.Context(), slog.LevelInfo, "bridge: credential refused",
		slog.String("route", x.b.routes.names[x.route]),
		slog.String("mode", x.mode.String()),
		slog.String("reason", reason.String()),
		slog.String("error", err.Error()))
}

// fail counts the request and answers it with the error handler. presented
// says a credential was refused (source rejected) rather than missing.
func (x *exchange) fail(status int, reason Reason, err error, presented bool) {
	source := SourceAnonymous
	if presented || x.rejected {
		source = SourceRejected
	}
	x.b.counters.request(x.route, x.mode, source)
	x.writeCookies()
	x.b.cfg.ErrorHandler(x.w, x.r, &Rejection{Status: status, Reason: reason, Err: err})
}

func tokenReason(err error, invalid Reason) Reason {
	switch {
	case errors.Is(err, ErrTokenExpired):
		return invalid + 1
	case errors.Is(err, ErrTokenRevoked):
		return invalid + 2
	}
	return invalid
}

func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}
