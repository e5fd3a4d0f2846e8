package legacyapp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// Principal.Source of a caller identified by the legacy session, and by
// an API key (the app's own credential, apiKeyPrefix and a secret).
const (
	SourceSession = "session"
	SourceAPIKey  = "api_key"
	apiKeyPrefix  = "ak_"
)

// Session value keys. The values are builtin types, so gob needs no
// registration.
const (
	keyUserID   = "user_id"  // string
	keyUsername = "username" // string
	keyRoles    = "roles"    // []string
	keyCart     = "cart"     // []string, item names
)

// Reasons of UnauthenticatedError, reported to API clients.
const (
	ReasonNoCredentials  = "no_credentials"  // no session cookie
	ReasonSessionInvalid = "session_invalid" // the cookie does not verify
	ReasonSessionUnknown = "session_unknown" // the cookie names no live session
	ReasonAPIKeyInvalid  = "api_key_invalid" // an API key that is no user's
)

var (
	// ErrUnauthenticated is wrapped by every error of a CurrentUser
	// function that means the caller is not logged in: the API answers
	// 401.
	ErrUnauthenticated = errors.New("legacyapp: unauthenticated")

	// ErrUnavailable is wrapped by every error of a CurrentUser function
	// that means the caller could not be identified because a backend
	// (the session store) is down: the API answers 503, never 401.
	ErrUnavailable = errors.New("legacyapp: session store unavailable")
)

// Principal is the caller of a request.
type Principal struct {
	// UserID is the local user's ID or, when Issuer is set, the subject
	// the external identity provider gave: no local user's.
	UserID   string
	Username string
	Roles    []string
	// Issuer is set for an identity of an external identity provider that
	// no local user is linked to: it owns nothing here and has no roles.
	Issuer string
	// Source says what identified the caller, e.g. "session" for the
	// legacy session (SourceSession).
	Source string
}

// HasRole reports whether p has the given role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// UnauthenticatedError reports why a request carries no usable credentials.
// It matches ErrUnauthenticated with errors.Is; the API answers 401 with its
// Reason.
type UnauthenticatedError struct {
	Reason string
}

func (e *UnauthenticatedError) Error() string {
	return "legacyapp: unauthenticated: " + e.Reason
}

// Is makes errors.Is(err, ErrUnauthenticated) true.
func (e *UnauthenticatedError) Is(target error) bool { return target == ErrUnauthenticated }

// UserByVerifiedEmail returns the local user an external identity with
// this verified email is: the demo's link between an IdP's identities and
// its users.
func (a *App) UserByVerifiedEmail(email string) (User, bool) { return a.users.byEmail(email) }

// SessionUser identifies the caller by the legacy session: the default
// Config.CurrentUser. The Principal's Source is SourceSession.
func (a *App) SessionUser(r *http.Request) (Principal, error) {
	s, err := a.store.Get(r, a.sessionName)
	if err != nil {
		return Principal{}, sessionError(err)
	}
	p, ok := principalFrom(s)
	if !ok {
		reason := ReasonNoCredentials
		if c, err := r.Cookie(a.sessionName); err == nil && c.Value != "" {
			reason = ReasonSessionUnknown
		}
		return Principal{}, &UnauthenticatedError{Reason: reason}
	}
	return p, nil
}

// sessionError classifies an error of sessions.Store.Get: a store that
// cannot be reached wraps ErrUnavailable, a cookie that does not verify is an
// UnauthenticatedError, anything else (e.g. undecodable values) is kept.
func sessionError(err error) error {
	var cookieErr securecookie.Error
	switch {
	case errors.Is(err, redisstore.ErrUnavailable):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.As(err, &cookieErr) && cookieErr.IsDecode():
		return &UnauthenticatedError{Reason: ReasonSessionInvalid}
	default:
		return fmt.Errorf("legacyapp: read session: %w", err)
	}
}

// principalFrom returns the user logged in to s, if any.
func principalFrom(s *sessions.Session) (Principal, bool) {
	id, _ := s.Values[keyUserID].(string)
	if id == "" {
		return Principal{}, false
	}
	name, _ := s.Values[keyUsername].(string)
	return Principal{
		UserID:   id,
		Username: name,
		Roles:    stringsValue(s.Values[keyRoles]),
		Source:   SourceSession,
	}, true
}

// stringsValue returns v as a []string: gob gives back []string, a JSON
// serializer []any.
func stringsValue(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
