package bridge

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gorilla/sessions"
)

// WrapStore returns the store for the app's handlers: each Get is counted
// for the route, and a Save that ends the session (MaxAge < 0) or changes
// its user revokes its tokens and clears the JWT cookie in that response.
func (b *Bridge) WrapStore(s sessions.Store) sessions.Store {
	return &watchedStore{Store: s, b: b}
}

// watchedStore is a sessions.Store seen by the bridge (WrapStore). A
// session a handler gets from it is saved through it: a gorilla Session
// saves through the store that made it, so each of the store's sessions
// is handed out in a twin made by this store, sharing its values and
// options (one per request and name, kept in the request's context as
// gorilla keeps its registry).
type watchedStore struct {
	sessions.Store
	b *Bridge
}

// Get counts a handler's session read, then reads through the store (and
// the request's registry, where the bridge's own read is cached).
func (s *watchedStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	s.b.counters.handlerReads[s.b.routes.lookup(r)].Add(1)
	twins, _ := r.Context().Value(twinsKey{}).(map[string]*twin)
	if twins == nil {
		twins = make(map[string]*twin)
		*r = *r.WithContext(context.WithValue(r.Context(), twinsKey{}, twins))
	}
	if t, ok := twins[name]; ok {
		return t.twin, t.err
	}
	orig, err := s.Store.Get(r, name)
	t := &twin{orig: orig, err: err}
	if orig != nil {
		t.twin = s.twinOf(orig)
	}
	twins[name] = t
	return t.twin, err
}

// New is the store's New, twinned.
func (s *watchedStore) New(r *http.Request, name string) (*sessions.Session, error) {
	orig, err := s.Store.New(r, name)
	if orig == nil {
		return nil, err
	}
	return s.twinOf(orig), err
}

func (s *watchedStore) twinOf(orig *sessions.Session) *sessions.Session {
	t := sessions.NewSession(s, orig.Name())
	t.ID, t.Values, t.Options, t.IsNew = orig.ID, orig.Values, orig.Options, orig.IsNew
	return t
}

type twinsKey struct{}

type twin struct {
	orig, twin *sessions.Session
	err        error
}

// Save saves through the store, after ending the tokens of a session that
// ends or loses its user (whether or not the store then succeeds: the app
// meant to log out).
func (s *watchedStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	s.b.sessionSaved(r, w, sess, s.Store)
	err := s.Store.Save(r, w, sess)
	if twins, _ := r.Context().Value(twinsKey{}).(map[string]*twin); twins != nil {
		if t := twins[sess.Name()]; t != nil && t.twin == sess && t.orig != nil {
			// A new session got its ID: the registry's copy is the same.
			t.orig.ID, t.orig.Values, t.orig.Options, t.orig.IsNew = sess.ID, sess.Values, sess.Options, sess.IsNew
		}
	}
	return err
}

// sessionSaved ends the tokens of a session the app is ending (MaxAge < 0:
// its sid is revoked, as Logout does) or whose user the app changed or
// removed while keeping the session (a logout that only clears values, a
// login as someone else: the request's token is revoked, the session may
// mint anew for its next user). Either way the JWT cookie is cleared.
func (b *Bridge) sessionSaved(r *http.Request, w http.ResponseWriter, sess *sessions.Session, store sessions.Store) {
	ctx := r.Context()
	id := sess.ID
	if id == "" {
		// A store without server-side IDs: the cookie names the session.
		id = cookieValue(r, sess.Name())
	}
	var sid string
	if id != "" && b.sids != nil {
		sid = b.sids.sid(id)
	}
	now := b.cfg.Now()
	tokens := now.Add(b.cfg.TokenTTL + b.cfg.Leeway)
	// A cookie that holds the session itself (a cookie store's, no ID)
	// loads until its MaxAge, whatever the app saves: the copy from before
	// this save is refused that long, as Logout does.
	cookieHeld := sess.ID == ""
	replay := tokens
	if cookieHeld {
		replay = later(tokens, now.Add(replayableIn(unwrapStore(store), nil)))
	}
	prev, hasPrev := IdentityFrom(ctx)
	fromHere := hasPrev && prev.claims != nil && sid != "" && (prev.sid == sid || prev.claims.SID == sid || cookieHeld)
	var rs []Revocation
	switch {
	case sess.Options != nil && sess.Options.MaxAge < 0:
		if sid != "" {
			rs = append(rs, Revocation{SID: sid, Until: replay})
		}
		if fromHere && prev.claims.SID != "" && prev.claims.SID != sid {
			// A cookie store's token, minted from an earlier cookie.
			rs = append(rs, Revocation{SID: prev.claims.SID, Until: tokens})
		}
	case fromHere:
		// The request's token came from this session: does it still
		// name the same user?
		if u, err := b.cfg.ClaimsFromSession(ctx, sess.Values); err == nil && u.Subject == prev.subject {
			return
		}
		rs = append(rs, Revocation{JTI: prev.claims.ID, Until: prev.expiresAt.Add(b.cfg.Leeway)})
		if cookieHeld {
			rs = append(rs, Revocation{SID: sid, Until: replay})
		}
	default:
		return
	}
	for _, rv := range rs {
		b.Deny(rv)
	}
	if b.cfg.Fleet != nil && len(rs) > 0 {
		if err := b.cfg.Fleet.Revoke(ctx, rs); err != nil {
			b.log.LogAttrs(ctx, slog.LevelWarn, "bridge: the app's logout revoked its tokens on this instance only",
				slog.String("error", cut(err.Error(), maxLoggedError)))
		}
	}
	dropSetCookie(w, b.cfg.CookieName)
	b.clearCookie(w, b.cfg.CookieName)
}

// dropSetCookie removes the Set-Cookie headers of cookie name already in
// w (a token the bridge set earlier in the request).
func dropSetCookie(w http.ResponseWriter, name string) {
	h := w.Header()
	kept := h["Set-Cookie"][:0]
	for _, c := range h["Set-Cookie"] {
		if !strings.HasPrefix(c, name+"=") {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		h.Del("Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}

// unwrapStore is the app's own store under a watched one: the bridge's
// own reads are not a handler's.
func unwrapStore(s sessions.Store) sessions.Store {
	if ws, ok := s.(*watchedStore); ok {
		return ws.Store
	}
	return s
}
