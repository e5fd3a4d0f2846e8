package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
)

// Session is a legacy session as read by a SessionSource. ID is the raw
// session ID: a credential, never logged, never put in a token.
type Session struct {
	ID     string
	Values map[any]any
	TTL    time.Duration // remaining life in the store; 0 when the source cannot tell
}

// SessionSource reads the legacy session of a request without saving or
// extending it. Load returns an error wrapping ErrNoSession when the
// request has no session cookie, ErrSessionInvalid when the cookie fails
// verification, ErrSessionNotFound when it names no live session,
// ErrStoreUnavailable when the store cannot answer in time, and
// ErrSessionUndecodable when the stored values cannot be decoded. The
// bridge refuses a cookie over 4096 bytes before calling Load.
// StoreSource wraps the app's gorilla store; bridge/redisstore has
// read-only sources for the Redis formats monoliths already have.
type SessionSource interface {
	CookieName() string
	Load(r *http.Request) (*Session, error)
	// Delete removes the session from the store (logout, retirement).
	Delete(ctx context.Context, s *Session) error
}

// StoreSource reads sessions through the app's own gorilla sessions.Store
// and session name, so that any store works and a legacy handler later in
// the same request reuses the session gorilla already loaded (store.Get
// caches it in the request's registry): one Redis read per request.
//
// A token minted from a session never outlives it when the store can tell
// its remaining life: a store with a method TTL(ctx, id) (time.Duration,
// error), such as bridge/redisstore's, is asked once per conversion (0:
// gone; negative: no expiry). With
// any other store (sessions.CookieStore, say) tokens last
// Config.TokenTTL, and the sliding re-mint checks that the session still
// exists.
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
		case errors.As(err, &scErr) && scErr.IsDecode():
			return nil, fmt.Errorf("%w: %w", ErrSessionInvalid, err)
		case errors.Is(err, ErrSessionUndecodable), errors.Is(err, ErrStoreUnavailable):
			// A store that says which (bridge/redisstore's does).
			return nil, err
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
	return &Session{ID: id, Values: sess.Values}, nil
}

// Delete deletes the session where the store can delete by ID (a method
// Delete(ctx, id) error, as bridge/redisstore's has). Another store (a
// cookie store) keeps nothing the bridge could delete: expiring the
// cookie, which Logout does, ends such a session, and its sid's
// revocation refuses a replayed copy.
func (s *storeSource) Delete(ctx context.Context, sess *Session) error {
	if d, ok := s.store.(interface {
		Delete(context.Context, string) error
	}); ok {
		if err := d.Delete(ctx, sess.ID); err != nil {
			return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
	}
	return nil
}

// forget empties the session the request's registry keeps (store.Get's
// cache), so that a legacy handler later in the same request reads a new,
// empty session rather than one the bridge just ended.
func (s *storeSource) forget(r *http.Request) {
	if sess, err := s.store.Get(r, s.name); err == nil {
		clear(sess.Values)
		sess.IsNew = true
	}
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
