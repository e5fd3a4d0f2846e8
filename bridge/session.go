package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/internal/gobhint"
)

// Session is a legacy session as read by a SessionSource. ID is the raw
// session ID: a credential, never logged, never put in a token.
type Session struct {
	ID     string
	Values map[any]any
	TTL    time.Duration // remaining life in the store; 0 when the source cannot tell

	// gorilla is the session StoreSource loaded, and req the request it
	// loaded it for: what a store that cannot delete by ID saves with
	// MaxAge -1 to delete it, and, without an ID, a session its cookie
	// holds (replayable).
	gorilla *sessions.Session
	req     *http.Request
}

// cookieHeld reports whether the session lives in its cookie (a cookie
// store's): its ID is then the cookie's value, which every Save changes.
func (s *Session) cookieHeld() bool { return s.gorilla != nil && s.gorilla.ID == "" }

// SessionSource reads the legacy session of a request without saving or
// extending it. Load's error wraps ErrNoSession (no cookie),
// ErrSessionInvalid (the cookie fails verification), ErrSessionNotFound
// (no live session), ErrStoreUnavailable (no answer in time) or
// ErrSessionUndecodable (values that cannot be decoded); a cookie over
// 4096 bytes is refused before Load. StoreSource wraps the app's gorilla
// store; bridge/redisstore has read-only sources for Redis formats.
type SessionSource interface {
	CookieName() string
	Load(r *http.Request) (*Session, error)
	// Delete removes the session from the store (logout, retirement).
	Delete(ctx context.Context, s *Session) error
}

// StoreSource reads sessions through the app's own gorilla sessions.Store
// and session name: any store works, and a legacy handler later in the
// same request reuses the session store.Get cached (one Redis read).
// Delete uses the store's Delete(ctx, id) where it has one, else a Save
// with MaxAge -1, the way every gorilla store deletes.
//
// Tokens never outlive the session where the store has a method TTL(ctx,
// id) (time.Duration, error), as bridge/redisstore's: it is asked once per
// conversion (0: gone; negative: no expiry). With another store
// (sessions.CookieStore, say) they last Config.TokenTTL, and the sliding
// re-mint checks that the session still exists.
func StoreSource(store sessions.Store, name string) SessionSource {
	return &storeSource{store: unwrapStore(store), name: name}
}

type storeSource struct {
	store sessions.Store
	name  string
}

func (s *storeSource) CookieName() string { return s.name }

func (s *storeSource) Load(r *http.Request) (*Session, error) {
	c, err := r.Cookie(s.name)
	if err != nil || c.Value == "" {
		return nil, ErrNoSession
	}
	sess, err := s.store.Get(r, s.name)
	if err != nil {
		var scErr securecookie.Error
		switch {
		case errors.As(err, &scErr) && scErr.IsDecode() && !gobhint.IsGob(err):
			return nil, fmt.Errorf("%w: %w", ErrSessionInvalid, err)
		case errors.Is(err, ErrSessionUndecodable), errors.Is(err, ErrStoreUnavailable):
			// A store that says which (bridge/redisstore's does).
			return nil, err
		case gobhint.IsGob(err):
			// encoding/gob's error as the store got it (boj/redistore,
			// rbcervilla/redisstore, a cookie store through securecookie):
			// values no retry will decode, and for a type the app did not
			// register, the call it is missing.
			if name, ok := gobhint.Name(err); ok {
				return nil, fmt.Errorf("%w: %s: %w", ErrSessionUndecodable, gobhint.Message("decode", name), err)
			}
			return nil, fmt.Errorf("%w: %w", ErrSessionUndecodable, err)
		}
		// Anything else may be the store failing: never treat it as
		// "logged out".
		return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if sess.IsNew {
		return nil, ErrSessionNotFound
	}
	id := sess.ID
	if id == "" {
		// A store without server-side IDs (sessions.CookieStore): the
		// cookie itself identifies the session; it is only ever hashed.
		id = c.Value
	}
	return &Session{ID: id, Values: sess.Values, gorilla: sess, req: r}, nil
}

// Delete deletes the session through the store's own delete by ID where
// it has one (a method Delete(ctx, id) error, as bridge/redisstore's
// has), else the way every gorilla store deletes: a Save with MaxAge -1
// of the session Load read (rbcervilla/redisstore deletes its key; a
// cookie store keeps nothing server-side, and its sid's revocation
// refuses a replayed copy). The expired cookie that Save writes is
// discarded: Delete has no response, and the bridge expires the cookie
// itself wherever it deletes (Logout, retirement, a logged-out session).
func (s *storeSource) Delete(ctx context.Context, sess *Session) error {
	d, byID := s.store.(interface {
		Delete(context.Context, string) error
	})
	var err error
	switch {
	case byID:
		err = d.Delete(ctx, sess.ID)
	case sess.gorilla == nil || sess.req == nil:
		return fmt.Errorf("bridge: %T cannot delete a session by ID, and StoreSource did not load this one", s.store)
	default:
		gone := *sess.gorilla // the registry's copy keeps its options for a legacy handler
		opts := sessions.Options{}
		if sess.gorilla.Options != nil {
			opts = *sess.gorilla.Options
		}
		opts.MaxAge = -1
		gone.Options, gone.Values = &opts, map[any]any{}
		err = s.store.Save(sess.req.WithContext(ctx), discard{}, &gone)
	}
	if err != nil {
		return fmt.Errorf("%w: delete session: %w", ErrStoreUnavailable, err)
	}
	return nil
}

// discard is the response a store's Save writes to when StoreSource
// deletes through it: the cookie it sets is dropped.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// forget empties the session the request's registry keeps (store.Get's
// cache), so that a legacy handler later in the same request reads a new,
// empty session rather than one the bridge just ended.
func (s *storeSource) forget(r *http.Request) {
	if sess, err := s.store.Get(r, s.name); err == nil {
		clear(sess.Values)
		sess.IsNew = true
	}
}

// cookieStoreMaxAge is how long securecookie accepts a cookie by default
// (its timestamp's bound): the life of a cookie store's session whose
// MaxAge is not set.
const cookieStoreMaxAge = 30 * 24 * time.Hour

// replayable is how long a copy of a session's cookie may still load once
// the session is deleted: a store that keeps the session in the cookie
// itself (sessions.CookieStore, or any store whose session has no ID)
// cannot delete it, and the cookie loads until its MaxAge has passed; 0
// for sessions kept server-side. sess is the session logged out, or nil
// (a logout with a token alone: then only a sessions.CookieStore is
// known to keep its sessions in cookies).
func replayable(src SessionSource, sess *Session) time.Duration {
	s, ok := src.(*storeSource)
	if !ok {
		return 0
	}
	return replayableIn(s.store, sess)
}

// replayableIn is replayable for a session of the gorilla store.
func replayableIn(store sessions.Store, sess *Session) time.Duration {
	var opts *sessions.Options
	switch cs, isCookieStore := store.(*sessions.CookieStore); {
	case sess != nil && sess.gorilla != nil:
		if sess.gorilla.ID != "" {
			return 0
		}
		opts = sess.gorilla.Options
	case isCookieStore:
		opts = cs.Options
	default:
		return 0
	}
	if opts != nil && opts.MaxAge > 0 {
		return time.Duration(opts.MaxAge) * time.Second
	}
	return cookieStoreMaxAge
}

// sessionTTL is the remaining life of sess, where its source knows it or
// its store can tell (one round trip, paid at conversion only); 0 when
// neither can. An error means the store could not answer: no token is
// minted that could outlive the session.
func sessionTTL(ctx context.Context, src SessionSource, sess *Session) (time.Duration, error) {
	if sess.TTL > 0 {
		return sess.TTL, nil
	}
	s, ok := src.(*storeSource)
	if !ok {
		return 0, nil
	}
	store, ok := s.store.(interface {
		TTL(ctx context.Context, id string) (time.Duration, error)
	})
	if !ok {
		return 0, nil
	}
	ttl, err := store.TTL(ctx, sess.ID)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%w: remaining life of the session: %w", ErrStoreUnavailable, err)
	case ttl == 0:
		return 0, ErrSessionNotFound
	}
	return max(ttl, 0), nil
}

// maxCookieSize is the size above which a legacy cookie is refused without
// decoding (browsers keep at most 4096 bytes per cookie).
const maxCookieSize = 4096

// loadSession loads r's session from src, refusing an oversized cookie
// before any decoding or I/O (securecookie reports one with a plain error,
// which would read as the store failing).
func loadSession(src SessionSource, r *http.Request) (*Session, error) {
	if v := cookieValue(r, src.CookieName()); len(v) > maxCookieSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrSessionInvalid, len(v))
	}
	return src.Load(r)
}
