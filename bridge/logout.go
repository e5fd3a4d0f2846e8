package bridge

import (
	"errors"
	"net/http"
	"time"
)

// Logout ends the caller's session: it deletes it from the store, revokes
// its sid (a sessionless token's jti) here and through Config.Fleet, and
// clears both cookies with Clear-Site-Data, even when the store is down:
// the error then wraps ErrStoreUnavailable (answer 503; a retry completes).
func (b *Bridge) Logout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := b.cfg.Now()
	// Every token minted from a session expires by now + TokenTTL: its sid
	// is denied that long (longer if a presented token lives longer), and
	// as long as a copy of a session cookie that the store cannot delete
	// (a cookie store's) may still load.
	sidUntil := now.Add(b.cfg.TokenTTL + b.cfg.Leeway)
	sidUntil = later(sidUntil, now.Add(replayable(b.cfg.Sessions, nil)))
	var (
		rs   []Revocation
		errs []error
		sess *Session
	)
	for _, tok := range []string{cookieValue(r, b.cfg.CookieName), bearerOnly(r)} {
		if tok != "" {
			rs = append(rs, b.tokenRevocations(tok, now, sidUntil)...)
		}
	}
	if b.cfg.Sessions != nil && cookieValue(r, b.cfg.Sessions.CookieName()) != "" {
		s, err := loadSession(b.cfg.Sessions, r)
		switch {
		case err == nil:
			sess = s
			rs = append(rs, Revocation{SID: b.sids.sid(s.ID), Until: later(sidUntil, now.Add(replayable(b.cfg.Sessions, s)))})
		case errors.Is(err, ErrStoreUnavailable):
			errs = append(errs, err)
		}
	}
	for _, r := range rs {
		b.Deny(r)
	}
	// One call for every revocation: with the fleet's store hanging,
	// logout takes at most the session load plus the fleet's deadline.
	if b.cfg.Fleet != nil && len(rs) > 0 {
		errs = append(errs, b.cfg.Fleet.Revoke(ctx, rs))
	}
	if sess != nil {
		errs = append(errs, b.cfg.Sessions.Delete(ctx, sess))
	}
	if b.cfg.Sessions != nil {
		b.clearCookie(w, b.cfg.Sessions.CookieName())
	}
	b.clearCookie(w, b.cfg.CookieName)
	w.Header().Set("Clear-Site-Data", `"cookies"`)
	w.Header().Set("Cache-Control", "no-store")
	return errors.Join(errs...)
}

func bearerOnly(r *http.Request) string {
	tok, _ := bearerToken(r)
	return tok
}

// tokenRevocations returns the revocations of a verified token: its sid
// (until sidUntil at least), which covers every token of its session, or
// without one its jti (until it could have expired), folded into its
// subject's once the subject logged out too many (denylist.fold). A token
// that does not verify needs no revocation; one already revoked (here) is
// revoked again, so that a logout retried after Redis failed reaches the
// fleet.
func (b *Bridge) tokenRevocations(tok string, now, sidUntil time.Time) []Revocation {
	e, err := b.verifier.verify(tok)
	again := errors.Is(err, ErrTokenRevoked)
	if again {
		// Verified but denied: check it again without the denylist (and
		// without the cache), never trusting unverified claims.
		v := *b.verifier
		v.revoked, v.cache = newDenylist(), newTokenCache(-1)
		e, err = v.verify(tok)
	}
	if err != nil {
		return nil
	}
	until := sidUntil
	if !e.exp.IsZero() {
		until = e.exp.Add(b.cfg.Leeway)
	}
	switch {
	case e.sid != "":
		return []Revocation{{SID: e.sid, Until: later(until, sidUntil)}}
	case again && b.revoked.has("", "", e.subject(), e.exp, now),
		!again && b.revoked.fold(e.subject(), now, until):
		return []Revocation{{Subject: e.claims.Issuer + " " + e.claims.Subject, Until: until}}
	}
	return []Revocation{{JTI: e.jti, Until: until}}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
