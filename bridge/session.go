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
	// TTL is the session's remaining lifetime in the store; 0 when the
	// source cannot tell.
	TTL time.Duration
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
// The remaining TTL is not known through this interface, so tokens minted
// from it last Config.TokenTTL; the sliding re-mint checks that the session
// still exists.
func StoreSource(store sessions.Store, name string) SessionSource {
	return &storeSource{store: store, name: name}
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

func (s *storeSource) Delete(ctx context.Context, sess *Session) error {
	if d, ok := s.store.(interface {
		Delete(context.Context, string) error
	}); ok {
		if err := d.Delete(ctx, sess.ID); err != nil {
			return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		return nil
	}
	return errors.New("bridge: the session store cannot delete by ID; delete the session in the app's logout")
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
