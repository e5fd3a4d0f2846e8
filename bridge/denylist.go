package bridge

import (
	"sync"
	"sync/atomic"
	"time"
)

// Revocation refuses until a time a token ID (JTI) or a session's tokens:
// its SID, or its raw ID (Session), which Deny hashes and never keeps.
type Revocation struct {
	JTI     string
	SID     string
	Session string
	Until   time.Time
}

// Deny refuses here, until r.Until or longer, the tokens r names.
func (b *Bridge) Deny(r Revocation) {
	if r.Session != "" && r.JTI == "" && r.SID == "" && b.sids != nil {
		r.SID, r.Session = b.sids.sid(r.Session), ""
	}
	switch {
	case r.Session != "":
		// Both an ID and a raw session ID, or no SIDKey: nothing to deny.
	case r.JTI != "" && r.SID == "":
		b.revoked.extend(b.revoked.jtis, r.JTI, r.Until)
	case r.SID != "" && r.JTI == "":
		b.revoked.extend(b.revoked.sids, r.SID, r.Until)
	}
	b.revoked.forgetEvery(b.cfg.Now(), time.Second)
}

// denylist holds revoked token IDs (jti) and session hashes (sid), each
// with the time after which it can be forgotten. n mirrors the number of
// entries, stored under mu after every change, so that the check of every
// request takes no lock while nothing is revoked: a check that reads 0
// while a revocation is being added is ordered before that revocation, as
// it would be had it taken the read lock first.
type denylist struct {
	mu   sync.RWMutex
	jtis map[string]time.Time
	sids map[string]time.Time
	n    atomic.Int64
	// forgotAt is when forget last ran (Unix nanoseconds).
	forgotAt atomic.Int64
}

func newDenylist() *denylist {
	return &denylist{jtis: make(map[string]time.Time), sids: make(map[string]time.Time)}
}

func (d *denylist) has(jti, sid string) bool {
	if d.n.Load() == 0 {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if _, ok := d.jtis[jti]; ok && jti != "" {
		return true
	}
	_, ok := d.sids[sid]
	return ok && sid != ""
}

// counted updates n; d.mu must be held for writing.
func (d *denylist) counted() { d.n.Store(int64(len(d.jtis) + len(d.sids))) }

// forgetEvery runs forget at most once per period, so that a fleet's
// resync, which denies every entry again, does not scan them each time.
func (d *denylist) forgetEvery(now time.Time, period time.Duration) {
	last := d.forgotAt.Load()
	if now.UnixNano()-last < int64(period) || !d.forgotAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	d.forget(now)
}

// forget drops entries whose time has passed.
func (d *denylist) forget(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, t := range d.jtis {
		if t.Before(now) {
			delete(d.jtis, k)
		}
	}
	for k, t := range d.sids {
		if t.Before(now) {
			delete(d.sids, k)
		}
	}
	d.counted()
}

// extend denies id in table m (jtis or sids) until the given time, never
// shortening an existing denial. A fleet's resync may call it for every
// entry every second: an entry already known takes only the read lock, so
// the token path (which reads the denylist) is not held up.
func (d *denylist) extend(m map[string]time.Time, id string, until time.Time) {
	d.mu.RLock()
	old, ok := m[id]
	d.mu.RUnlock()
	if ok && !old.Before(until) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := m[id]; !ok || old.Before(until) {
		m[id] = until
	}
	d.counted()
}
