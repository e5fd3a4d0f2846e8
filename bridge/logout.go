package bridge

import (
	"errors"
	"net/http"
	"time"
)

// Logout ends the caller's session everywhere the bridge can reach: it
// deletes the legacy session from the store, revokes the token's jti and
// the session's sid on this instance, and clears both cookies (Path=/) with
// Clear-Site-Data. Cookies are cleared even when the store cannot be
// reached; the error then wraps ErrStoreUnavailable and the caller should
// answer 503.
func (b *Bridge) Logout(w http.ResponseWriter, r *http.Request) error {
	now := b.cfg.Now()
	until := now.Add(b.cfg.TokenTTL + b.cfg.Leeway)
	var err error
	if tok := cookieValue(r, b.cfg.CookieName); tok != "" {
		b.revokeToken(tok, until)
	}
	if tok, ok := bearerToken(r); ok {
		b.revokeToken(tok, until)
	}
	if b.cfg.Sessions != nil && cookieValue(r, b.cfg.Sessions.CookieName()) != "" {
		sess, lerr := b.cfg.Sessions.Load(r)
		switch {
		case lerr == nil:
			b.revoked.addSID(b.sids.sid(sess.ID), until)
			err = b.cfg.Sessions.Delete(r.Context(), sess)
		case errors.Is(lerr, ErrStoreUnavailable):
			err = lerr
		}
		b.clearCookie(w, b.cfg.Sessions.CookieName())
	}
	b.clearCookie(w, b.cfg.CookieName)
	w.Header().Set("Clear-Site-Data", `"cookies"`)
	w.Header().Set("Cache-Control", "no-store")
	return err
}

// revokeToken denies a verified token's jti and sid until it could have
// expired.
func (b *Bridge) revokeToken(tok string, until time.Time) {
	e, err := b.verifier.verify(tok)
	if err != nil {
		return
	}
	if e.claims.ExpiresAt != nil && e.claims.ExpiresAt.Time.Before(until) {
		until = e.claims.ExpiresAt.Time.Add(b.cfg.Leeway)
	}
	if e.claims.ID != "" {
		b.revoked.addJTI(e.claims.ID, until)
	}
	if e.claims.SID != "" {
		b.revoked.addSID(e.claims.SID, until)
	}
}
