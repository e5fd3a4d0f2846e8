package bridge

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Logout ends the caller's session everywhere the bridge can reach: it
// deletes the legacy session from the store, revokes the token's jti and
// the session's sid (at once here, within RevocationResync on every
// instance sharing Config.Redis), and clears both cookies (Path=/) with
// Clear-Site-Data. Cookies are cleared even when the store cannot be
// reached; the error then wraps ErrStoreUnavailable and the caller should
// answer 503.
func (b *Bridge) Logout(w http.ResponseWriter, r *http.Request) error {
	now := b.cfg.Now()
	until := now.Add(b.cfg.TokenTTL + b.cfg.Leeway)
	var errs []error
	for _, tok := range []string{cookieValue(r, b.cfg.CookieName), bearerOnly(r)} {
		if tok != "" {
			errs = append(errs, b.revokeToken(r.Context(), tok, until))
		}
	}
	if b.cfg.Sessions != nil && cookieValue(r, b.cfg.Sessions.CookieName()) != "" {
		sess, err := b.cfg.Sessions.Load(r)
		switch {
		case err == nil:
			errs = append(errs, b.revoke(r.Context(), "sid", b.sids.sid(sess.ID), until),
				b.cfg.Sessions.Delete(r.Context(), sess))
		case errors.Is(err, ErrStoreUnavailable):
			errs = append(errs, err)
		}
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

// revokeToken denies a verified token's jti and sid until it could have
// expired. A token that does not verify needs no revocation.
func (b *Bridge) revokeToken(ctx context.Context, tok string, until time.Time) error {
	e, err := b.verifier.verify(tok)
	if err != nil {
		return nil
	}
	if e.claims.ExpiresAt != nil {
		until = e.claims.ExpiresAt.Time.Add(b.cfg.Leeway)
	}
	var errs []error
	if e.claims.ID != "" {
		errs = append(errs, b.revoke(ctx, "jti", e.claims.ID, until))
	}
	if e.claims.SID != "" {
		errs = append(errs, b.revoke(ctx, "sid", e.claims.SID, until))
	}
	return errors.Join(errs...)
}
