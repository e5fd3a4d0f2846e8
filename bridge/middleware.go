package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// Middleware is Check, with refusals answered by Config.ErrorHandler. On
// gorilla/mux, use it with router.Use (or on a route's handler) so that
// mux.CurrentRoute is set.
func (b *Bridge) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, err := b.Check(w, r)
		if err != nil {
			b.cfg.ErrorHandler(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Check authenticates r by its route's mode and counts it: it returns the
// request to hand on, with the identity, or a *Rejection; cookies go into
// w's header. The route is the mux path template (of the route a *mux.Router
// mounted as its handler matched), else r.Pattern, else RouteUnmatched.
func (b *Bridge) Check(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	x := check{b: b, w: w, r: r, route: b.routes.lookup(r), now: b.cfg.Now()}
	x.mode = b.routes.mode(x.route)
	id, err := x.authenticate()
	switch {
	case err != nil:
		return r, err
	case id != nil:
		b.counters.request(x.route, x.mode, id.source)
		x.writeCookies()
		return r.WithContext(withIdentity(r.Context(), id)), nil
	case x.appCredential():
		// The app's own credential, in every mode: the app decides.
		b.counters.request(x.route, x.mode, SourceApp)
		x.writeCookies()
		return r, nil
	case x.mode != Legacy:
		reason, err := ReasonNoCredentials, error(ErrNoCredentials)
		if x.rejected {
			reason, err = x.last, x.lastErr
		} else {
			b.counters.reject(x.route, reason)
		}
		return r, x.fail(http.StatusUnauthorized, reason, err, false)
	}
	source := SourceAnonymous
	if x.rejected {
		source = SourceRejected
	}
	b.counters.request(x.route, x.mode, source)
	x.writeCookies()
	return r, nil
}

// check is the state of one request through Check.
type check struct {
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
	// sessionCookie is the legacy session cookie's value and jwtCookie
	// whether a JWT cookie came: each read from the header once.
	sessionCookie string
	jwtCookie     bool
}

// appCredential reports whether the request carries a credential the app
// checks itself: an Authorization header that is no JWT bearer, or what
// Config.AppCredential recognises.
func (x *check) appCredential() bool {
	if _, app := authorization(x.r); app {
		return true
	}
	return x.b.cfg.AppCredential != nil && x.b.cfg.AppCredential(x.r)
}

// writeCookies clears the JWT cookie if it was refused or outlived its
// session and no new one was set in its place.
func (x *check) writeCookies() {
	if x.clearJWT && !x.setJWT {
		x.b.clearCookie(x.w, x.b.cfg.CookieName)
		x.clearJWT = false
	}
}

// authenticate establishes the request's identity (nil: none), or the
// *Rejection that refuses the request.
func (x *check) authenticate() (*Identity, error) {
	b := x.b
	var id *Identity
	var tokenEntry *cacheEntry // the token that authenticated, if any

	// 1. Authorization: Bearer.
	if tok, ok := bearerToken(x.r); ok {
		e, err := b.verifier.verifyAt(tok, x.now)
		if err != nil {
			reason := tokenReason(err, fromBearer)
			x.note(reason, err)
			if x.mode != Legacy {
				return nil, x.fail(http.StatusUnauthorized, reason, err, true)
			}
		} else {
			id, _ = e.identities(x.r.Context(), b.log)
			tokenEntry = e
		}
	}

	// 2. The JWT cookie.
	var cookieEntry *cacheEntry
	tok, n := cookieValues(x.r, b.cfg.CookieName)
	x.jwtCookie = tok != "" || n > 1
	switch {
	case n > 1:
		// Two cookies of our name: one was set by someone else (a sibling
		// subdomain can toss one). Neither is trusted; the session, if
		// any, decides.
		if id == nil {
			x.note(ReasonCookieDuplicate, fmt.Errorf("%w: several %s cookies", ErrInvalidToken, b.cfg.CookieName))
		}
		if x.mode != Legacy {
			x.clearJWT = true
		}
	case tok != "":
		e, err := b.verifier.verifyAt(tok, x.now)
		switch {
		case err != nil:
			if id == nil {
				x.note(tokenReason(err, fromCookie), err)
			}
			if x.mode != Legacy {
				x.clearJWT = true
			}
		case id != nil:
			if e.claims.Subject != tokenEntry.claims.Subject || e.claims.Issuer != tokenEntry.claims.Issuer {
				b.counters.reject(x.route, ReasonSubjectMismatch)
				b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: bearer and cookie name different subjects; bearer wins",
					slog.String("route", b.routes.names[x.route]))
			}
		default:
			_, id = e.identities(x.r.Context(), b.log)
			cookieEntry, tokenEntry = e, e
		}
	}

	if b.cfg.Sessions != nil {
		x.sessionCookie = cookieValue(x.r, b.cfg.Sessions.CookieName())
	}
	sv := x.sessionCookie
	sessionCookie := sv != ""

	// CSRF: unsafe methods authenticated (or to be) by a cookie.
	if x.mode != Legacy && !isSafe(x.r.Method) && (id == nil || id.source == SourceJWTCookie) &&
		(cookieEntry != nil || sessionCookie || x.rejected) {
		if err := b.cfg.CrossOrigin.Check(x.r); err != nil {
			err = errors.Join(ErrCrossOrigin, err)
			x.note(ReasonCrossOrigin, err)
			return nil, x.fail(http.StatusForbidden, ReasonCrossOrigin, err, true)
		}
	}

	// A JWT cookie minted from another session than the one the request
	// carries (an account switch in the same browser, a login flow that
	// left the previous user's cookie) never wins over that session. The
	// token remembers the session cookie it was last found with: one
	// session read per token and cookie value, none on repeat requests.
	var sess *Session
	if cookieEntry != nil && id.source == SourceJWTCookie && sessionCookie && cookieEntry.sid != "" {
		if !cookieEntry.boundTo(sv) && cookieEntry.claims.SCH != "" && cookieEntry.claims.SCH == b.sids.cookieHash(sv) {
			cookieEntry.bind(sv) // minted with this very cookie, on any instance
		}
		if !cookieEntry.boundTo(sv) {
			s, err := loadSession(b.cfg.Sessions, x.r)
			switch {
			case err == nil && b.sids.sid(s.ID) == cookieEntry.sid,
				err == nil && s.cookieHeld() && b.sameUser(x.r.Context(), s, cookieEntry):
				// (A cookie store's session changes its cookie, and so
				// its sid, at every Save: its user tells it.)
				cookieEntry.bind(sv)
			case err == nil:
				// Another session: it decides, and the JWT cookie goes.
				b.counters.reject(x.route, ReasonCookieOtherSession)
				x.clearJWT = true
				id, cookieEntry, tokenEntry, sess = nil, nil, nil, s
			}
			// A session that cannot be read (gone, invalid, the store
			// down) leaves the valid token in charge.
		}
	}

	if id != nil {
		switch {
		case tokenEntry != nil && sessionCookie && b.cfg.RetireSessions:
			x.retireBehindToken(tokenEntry)
		case cookieEntry != nil && x.mode == Dual && sessionCookie && x.nearExpiry(cookieEntry.claims):
			x.refresh(cookieEntry)
		}
		return id, nil
	}

	// 3. The legacy session, only when no JWT authenticated.
	if !sessionCookie {
		return nil, nil
	}
	if x.mode == JWT {
		x.note(ReasonSessionOnJWT, ErrSessionOnJWTRoute)
		return nil, nil
	}
	if sess == nil {
		var err error
		if sess, err = loadSession(b.cfg.Sessions, x.r); err != nil {
			return nil, x.sessionFailed(err)
		}
	}
	sid := b.sids.sid(sess.ID)
	if b.revoked.has("", sid, subject{}, time.Time{}, x.now) {
		// Logged out through one of its tokens: the session never
		// authenticates or mints again, and goes the first time it is seen.
		x.endSession(sess)
		x.note(ReasonSessionRevoked, fmt.Errorf("%w: the session was logged out", ErrSessionNotFound))
		return nil, nil
	}
	u, err := b.cfg.ClaimsFromSession(x.r.Context(), sess.Values)
	if err != nil {
		x.note(ReasonSessionClaims, err)
		return nil, nil
	}
	if u.Subject == "" {
		x.guest(sess)
		return nil, nil
	}
	id = &Identity{source: SourceSession, session: sess.Values, sid: sid, issuer: b.cfg.Issuer,
		subject: u.Subject, name: u.Name, roles: u.Roles}
	if b.cfg.Fleet != nil {
		b.cfg.Fleet.SessionSeen(sid)
	}
	if x.mode == Dual && b.sids.inRollout(sess.ID, int(b.rollout.Load())) {
		x.convert(sess, id)
	}
	return id, nil
}

// guest counts a live session that names no user (a cart before login,
// or a mapping that misses the app's user key) and, once per route, logs
// the keys it holds, never their values.
func (x *check) guest(sess *Session) {
	b := x.b
	b.counters.guests[x.route].Add(1)
	if b.counters.guestLogged[x.route].Swap(true) {
		return
	}
	keys := make([]string, 0, len(sess.Values))
	for k := range sess.Values {
		keys = append(keys, capped(fmt.Sprint(k)))
	}
	slices.Sort(keys)
	b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: a live session names no user (a guest, or Config.ClaimsFromSession misses the app's user key)",
		slog.String("route", b.routes.names[x.route]), slog.Any("session_keys", keys[:min(len(keys), 32)]))
}

// sameUser reports whether session s names the user token e was minted
// for.
func (b *Bridge) sameUser(ctx context.Context, s *Session, e *cacheEntry) bool {
	u, err := b.cfg.ClaimsFromSession(ctx, s.Values)
	return err == nil && u.Subject != "" && u.Subject == e.claims.Subject
}

// sessionFailed handles a failed session load: it notes the refusal and
// returns the *Rejection that refuses the request, or nil to go on without
// the session.
func (x *check) sessionFailed(err error) error {
	switch {
	case errors.Is(err, ErrNoSession):
		// Only called when the request has a non-empty session cookie: one
		// that net/http could not parse is a credential refused.
		x.note(ReasonSessionInvalid, fmt.Errorf("%w: cookie cannot be parsed", ErrSessionInvalid))
		return nil
	case errors.Is(err, ErrSessionInvalid):
		x.note(ReasonSessionInvalid, err)
		return nil
	case errors.Is(err, ErrSessionNotFound):
		x.note(ReasonSessionUnknown, err)
		if x.mode != Legacy && x.jwtCookie {
			x.clearJWT = true
		}
		return nil
	case errors.Is(err, ErrSessionUndecodable):
		x.note(ReasonSessionUndecodable, err)
		if x.mode == Legacy {
			return nil
		}
		return x.fail(http.StatusInternalServerError, ReasonSessionUndecodable, err, false)
	default:
		if !errors.Is(err, ErrStoreUnavailable) {
			err = errors.Join(ErrStoreUnavailable, err)
		}
		x.note(ReasonStoreUnavailable, err)
		if x.mode == Legacy {
			return nil
		}
		return x.fail(http.StatusServiceUnavailable, ReasonStoreUnavailable, err, false)
	}
}

// convert mints a JWT from the session and sets it as the JWT cookie.
func (x *check) convert(sess *Session, id *Identity) {
	b := x.b
	ttl, err := sessionTTL(x.r.Context(), b.cfg.Sessions, sess)
	var tok string
	var c *Claims
	if err == nil {
		tok, c, err = b.mintFor(x.r.Context(), sess.Values, ttl, id.sid, x.sessionCookieHash(), x.now)
	}
	if err != nil {
		b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: session not converted",
			slog.String("route", b.routes.names[x.route]), slog.String("error", err.Error()))
		return
	}
	if b.setTokenCookie(x.w, tok, c.ExpiresAt.Time, x.now) {
		x.setJWT = true
		x.minted(tok, c)
	}
	id.claims, id.token, id.expiresAt = c, tok, c.ExpiresAt.Time
	id.subject, id.name, id.roles = c.Subject, c.Name, c.Roles
	b.counters.conversions[x.route].Add(1)
	if b.cfg.RetireSessions {
		x.retire(sess)
	}
}

// sessionCookieHash is the sch claim of a token minted from the request's
// session: the keyed hash of its cookie, so that any instance can tell
// without a session read that a request carries the token's session.
func (x *check) sessionCookieHash() string {
	return x.b.sids.cookieHash(x.sessionCookie)
}

// minted caches a token the bridge just minted from the request's session
// as verified (the browser's next request skips the signature check),
// bound to the session cookie it came with: the next request carrying
// both reads no session to learn they belong together.
func (x *check) minted(tok string, c *Claims) {
	e := newCacheEntry(tok, c, x.b.verifier.issuers[x.b.cfg.Issuer])
	e.bind(x.sessionCookie)
	x.b.verifier.cache.put(tok, e, x.now)
}

// retire deletes a converted session from the store and expires its
// cookie: the user now holds a JWT. A store that cannot delete it leaves it
// to expire on its own.
func (x *check) retire(sess *Session) {
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
func (x *check) retireBehindToken(e *cacheEntry) {
	b := x.b
	sess, err := loadSession(b.cfg.Sessions, x.r)
	switch {
	case err == nil:
		if e.sid != "" && e.sid == b.sids.sid(sess.ID) {
			x.retire(sess)
			return
		}
	case errors.Is(err, ErrStoreUnavailable):
		return
	}
	b.clearCookie(x.w, b.cfg.Sessions.CookieName())
}

// endSession deletes a logged-out session, expires its cookie and the JWT
// cookie, and empties the copy a legacy handler would read later in this
// request (StoreSource). A store that cannot answer leaves the session to
// the next request: it is refused all the same.
func (x *check) endSession(sess *Session) {
	b := x.b
	if err := b.cfg.Sessions.Delete(x.r.Context(), sess); err != nil {
		b.log.LogAttrs(x.r.Context(), slog.LevelWarn, "bridge: logged-out session not deleted",
			slog.String("route", b.routes.names[x.route]), slog.String("error", err.Error()))
	}
	if f, ok := b.cfg.Sessions.(interface{ forget(*http.Request) }); ok {
		f.forget(x.r)
	}
	b.clearCookie(x.w, b.cfg.Sessions.CookieName())
	if x.jwtCookie {
		x.clearJWT = true
	}
}

// nearExpiry reports whether a token is in the last quarter of its life.
func (x *check) nearExpiry(c *Claims) bool {
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return false
	}
	life := c.ExpiresAt.Sub(c.IssuedAt.Time)
	return c.ExpiresAt.Sub(x.now) < life/4
}

// refresh re-mints a JWT cookie near its expiry while its session lives,
// and clears it when the session is gone. A store that cannot answer
// changes nothing: the token is still valid.
func (x *check) refresh(e *cacheEntry) {
	b := x.b
	// Only tokens the bridge minted from a session slide with it: a token
	// of another issuer, or one set from a bearer token, has no session
	// of ours to follow (and must not turn into the session's user).
	if e.sid == "" {
		return
	}
	sess, err := loadSession(b.cfg.Sessions, x.r)
	switch {
	case err == nil:
		sid := b.sids.sid(sess.ID)
		if e.sid != sid {
			return // another session: it converts on its own
		}
		ttl, err := sessionTTL(x.r.Context(), b.cfg.Sessions, sess)
		if err != nil {
			return
		}
		tok, c, err := b.mintFor(x.r.Context(), sess.Values, ttl, sid, x.sessionCookieHash(), x.now)
		if err == nil && b.setTokenCookie(x.w, tok, c.ExpiresAt.Time, x.now) {
			x.setJWT = true
			x.minted(tok, c)
		}
	case errors.Is(err, ErrSessionNotFound):
		x.clearJWT = true
	}
}

// note counts a refused credential and logs why (never the credential).
func (x *check) note(reason Reason, err error) {
	x.rejected, x.last, x.lastErr = true, reason, err
	x.b.counters.reject(x.route, reason)
	x.b.log.LogAttrs(x.r.Context(), slog.LevelInfo, "bridge: credential refused",
		slog.String("route", x.b.routes.names[x.route]),
		slog.String("mode", x.mode.String()),
		slog.String("reason", reason.String()),
		slog.String("error", cut(err.Error(), maxLoggedError)))
}

// fail counts the request and returns the *Rejection to answer it with.
// presented says a credential was refused (source rejected) rather than
// missing.
func (x *check) fail(status int, reason Reason, err error, presented bool) error {
	source := SourceAnonymous
	if presented || x.rejected {
		source = SourceRejected
	}
	x.b.counters.request(x.route, x.mode, source)
	x.writeCookies()
	return &Rejection{Status: status, Reason: reason, Err: err}
}

func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}
