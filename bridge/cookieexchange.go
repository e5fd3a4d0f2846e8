package bridge

import (
	"errors"
	"fmt"
	"net/http"
)

// CookieExchangeHandler: POST verifies the Authorization bearer token
// (never the body or query) and sets exactly it as the JWT cookie for its
// remaining life, 204; DELETE clears the cookie. Both are CSRF-checked.
func (b *Bridge) CookieExchangeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodDelete:
		default:
			w.Header().Set("Allow", "POST, DELETE")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if err := b.cfg.CrossOrigin.Check(r); err != nil {
			b.cfg.ErrorHandler(w, r, &Rejection{Status: http.StatusForbidden, Reason: ReasonCrossOrigin, Err: errors.Join(ErrCrossOrigin, err)})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodDelete {
			b.clearCookie(w, b.cfg.CookieName)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		tok, ok := bearerToken(r)
		if !ok {
			b.cfg.ErrorHandler(w, r, &Rejection{Status: http.StatusUnauthorized, Reason: ReasonNoCredentials, Err: ErrNoCredentials})
			return
		}
		now := b.cfg.Now()
		e, err := b.verifier.verifyAt(tok, now)
		if err != nil {
			b.cfg.ErrorHandler(w, r, &Rejection{Status: http.StatusUnauthorized, Reason: tokenReason(err, fromBearer), Err: err})
			return
		}
		if !b.setTokenCookie(w, tok, e.exp, now) {
			// Past exp (within the leeway) or with less than a second
			// left: no cookie can carry it, and a 204 would say it did.
			err := fmt.Errorf("%w: token has less than a second to live", ErrTokenExpired)
			b.cfg.ErrorHandler(w, r, &Rejection{Status: http.StatusUnauthorized, Reason: ReasonBearerExpired, Err: err})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
