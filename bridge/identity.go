package bridge

import (
	"context"
	"slices"
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
	SourceApp                     // the app's own credential, left to the app
	numSources
)

var sourceNames = [numSources]string{"anonymous", "session", "jwt_cookie", "jwt_bearer", "rejected", "app"}

// String returns the source's label: anonymous, session, jwt_cookie,
// jwt_bearer, rejected or app.
func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "unknown"
}

// ParseSource parses a source's label, as String writes it.
func ParseSource(s string) (Source, bool) {
	i := slices.Index(sourceNames[:], s)
	return Source(i), i >= 0
}

// Identity is who made a request. It is a value read through its methods,
// none of which hands out anything a later request shares.
type Identity struct {
	issuer    string
	subject   string
	name      string
	roles     []string
	claims    *Claims
	source    Source
	session   map[any]any
	expiresAt time.Time
	token     string
	sid       string // the session's keyed hash, for a session identity
}

// Subject is the local user's ID (a session's, a token of Config.Issuer's,
// or a linked IdP identity's); empty for an unlinked IdP identity.
func (id Identity) Subject() string { return id.subject }

// Issuer is the token's iss, or Config.Issuer for a session.
func (id Identity) Issuer() string { return id.issuer }

// Name is the user's display name.
func (id Identity) Name() string { return id.name }

// Roles returns a copy of the user's roles.
func (id Identity) Roles() []string { return slices.Clone(id.roles) }

// HasRole reports whether the identity has the role.
func (id Identity) HasRole(role string) bool { return slices.Contains(id.roles, role) }

// Source is the credential that authenticated the request.
func (id Identity) Source() Source { return id.source }

// Claims returns a copy of the token's claims (false: an unconverted
// session).
func (id Identity) Claims() (Claims, bool) {
	if id.claims == nil {
		return Claims{}, false
	}
	return id.claims.clone(), true
}

// Session returns the session's values (the request's own) when the
// session authenticated the request, else nil.
func (id Identity) Session() map[any]any { return id.session }

// ExpiresAt is the token's expiry; zero for an unconverted session.
func (id Identity) ExpiresAt() time.Time { return id.expiresAt }

// Token is the JWT that authenticated the request or was minted for it.
func (id Identity) Token() string { return id.token }

type contextKey struct{}

// IdentityFrom returns the identity the middleware established for the
// request, and whether there is one.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(*Identity)
	if !ok || id == nil {
		return Identity{}, false
	}
	return *id, true
}

func withIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}
