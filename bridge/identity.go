package bridge

import (
	"context"
	"time"
)

// Source is the kind of credential that authenticated a request.
type Source uint8

// Sources, in the order of the counters.
const (
	SourceAnonymous Source = iota // no credential
	SourceSession                 // the legacy session cookie
	SourceJWTCookie               // the JWT cookie
	SourceJWTBearer               // Authorization: Bearer
	SourceRejected                // a credential was presented and refused
	numSources
)

var sourceNames = [numSources]string{"anonymous", "session", "jwt_cookie", "jwt_bearer", "rejected"}

// String returns the source's label: anonymous, session, jwt_cookie,
// jwt_bearer or rejected.
func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "unknown"
}

// Identity is who made a request, as established by the middleware. It is
// shared and must be treated as read-only.
type Identity struct {
	// Subject is the token's sub, or the session's user ID.
	Subject string
	// Name and Roles come from the token or, through the claims mapping,
	// the session.
	Name  string
	Roles []string
	// Claims are the verified claims of the token (nil for a session
	// request that was not converted).
	Claims *Claims
	// Source is the credential that authenticated the request.
	Source Source
	// Session holds the legacy session's values when Source is
	// SourceSession; nil otherwise.
	Session map[any]any
	// ExpiresAt is the token's expiry (zero for an unconverted session).
	ExpiresAt time.Time
	// Token is the raw JWT that authenticated the request, or the one
	// minted for it; empty for an unconverted session.
	Token string

	sid string // the session's keyed hash, for a session identity
}

// HasRole reports whether the identity has the role.
func (id *Identity) HasRole(role string) bool {
	for _, r := range id.Roles {
		if r == role {
			return true
		}
	}
	return false
}

type contextKey struct{}

// IdentityFrom returns the identity the middleware established for the
// request context, and whether there is one. It never panics.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(*Identity)
	return id, ok && id != nil
}

// WithIdentity returns a copy of ctx carrying id, for tests and for
// handlers that establish an identity themselves.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}
