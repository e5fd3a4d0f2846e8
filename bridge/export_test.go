package bridge

import (
	"context"
	"time"
)

// The unexported bits that the request path's external tests (package
// bridge_test) check against.

// SIDOf is the sid b puts in the tokens it mints from the session id.
func SIDOf(b *Bridge, id string) string { return b.sids.sid(id) }

// SIDHash returns the keyed hash of session IDs under key, as a Bridge
// whose Config().SIDKey is key computes it: the sid of the tokens minted
// from a session, and whether the session falls within a rollout
// percentage.
func SIDHash(key []byte) (sid func(id string) string, inRollout func(id string, percent int) bool) {
	h := newSIDHash(key)
	return h.sid, h.inRollout
}

// MintFor is b.mintFor: the token a conversion mints from session values.
func MintFor(b *Bridge, values map[any]any, sessionTTL time.Duration, sid string, now time.Time) (string, *Claims, error) {
	return b.mintFor(context.Background(), values, sessionTTL, sid, "", now)
}

// Denied reports whether b's denylist holds the token ID jti or, with jti
// empty, the session hash sid, and until when.
func Denied(b *Bridge, jti, sid string) (time.Time, bool) {
	b.revoked.mu.RLock()
	defer b.revoked.mu.RUnlock()
	if jti != "" {
		until, ok := b.revoked.jtis[jti]
		return until, ok
	}
	until, ok := b.revoked.sids[sid]
	return until, ok
}

// DeniedJTIs is the number of token IDs in b's denylist.
func DeniedJTIs(b *Bridge) int {
	b.revoked.mu.RLock()
	defer b.revoked.mu.RUnlock()
	return len(b.revoked.jtis)
}
