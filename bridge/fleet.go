package bridge

import "context"

// Fleet is what a Bridge shares with the other instances: counts,
// revocations, run-time modes. bridge/fleet implements it on Redis, and
// drives the Bridge through Snapshot, SetMode, ResetMode and Deny.
type Fleet interface {
	// Attach is called once by New, with the Bridge; no I/O.
	Attach(b *Bridge) error
	// Revoke tells every instance (the Bridge has denied rs already); an
	// unreachable store wraps ErrStoreUnavailable.
	Revoke(ctx context.Context, rs []Revocation) error
	// SessionSeen notes a session's sid on the request path; no I/O.
	SessionSeen(sid string)
}
