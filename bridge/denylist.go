package bridge

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Revocation refuses until Until a token (JTI), a session's tokens (SID,
// or the raw ID Session, hashed), or a Subject's ("iss sub") expiring by then.
type Revocation struct {
	JTI     string
	SID     string
	Session string
	Subject string
	Until   time.Time
}

// Deny refuses here, until r.Until or longer, the tokens r names (a zero
// Revocation only forgets expired ones).
func (b *Bridge) Deny(r Revocation) {
	if r.Session != "" && r.JTI == "" && r.SID == "" && b.sids != nil {
		r.SID, r.Session = b.sids.sid(r.Session), ""
	}
	switch {
	case r.Session != "":
		// Both an ID and a raw session ID, or no SIDKey: nothing to deny.
	case r.JTI != "" && r.SID == "" && r.Subject == "":
		extend(b.revoked, b.revoked.jtis, r.JTI, r.Until)
	case r.SID != "" && r.JTI == "" && r.Subject == "":
		extend(b.revoked, b.revoked.sids, r.SID, r.Until)
	case r.Subject != "" && r.JTI == "" && r.SID == "":
		if iss, sub, _ := strings.Cut(r.Subject, " "); iss != "" && sub != "" {
			extend(b.revoked, b.revoked.subs, subject{iss, sub}, r.Until)
		}
	}
	b.revoked.forgetEvery(b.cfg.Now(), time.Second)
}

// denylist holds revoked token IDs (jti), session hashes (sid) and
// subjects (issuer, space, sub: their tokens that expire by the time), each
// with the time after which it can be forgotten. n mirrors the number of
// entries, stored under mu after every change, so that the check of every
// request takes no lock while nothing is revoked: a check that reads 0
// while a revocation is being added is ordered before that revocation, as
// it would be had it taken the read lock first.
type denylist struct {
	mu   sync.RWMutex
	jtis map[string]time.Time
	sids map[string]time.Time
	subs map[subject]time.Time
	n    atomic.Int64
	// logouts counts, per subject, this instance's revocations of tokens
	// without a session (see fold).
	logouts map[subject]logoutCount
	// forgotAt is when forget last ran (Unix nanoseconds).
	forgotAt atomic.Int64
}

func newDenylist() *denylist {
	return &denylist{
		jtis: make(map[string]time.Time), sids: make(map[string]time.Time),
		subs: make(map[subject]time.Time), logouts: make(map[subject]logoutCount),
	}
}

// subject is a token's issuer and sub: the key of a Revocation.Subject
// ("iss sub"), kept apart so that a lookup builds no string.
type subject struct{ iss, sub string }

// has reports whether, at now, a token (its jti, sid, subject and exp)
// or, with only a sid, a session is revoked. An entry whose time has
// passed denies nothing, whether or not forget has dropped it yet.
func (d *denylist) has(jti, sid string, sub subject, exp, now time.Time) bool {
	if d.n.Load() == 0 {
		return false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if until, ok := d.jtis[jti]; ok && jti != "" && !now.After(until) {
		return true
	}
	if until, ok := d.sids[sid]; ok && sid != "" && !now.After(until) {
		return true
	}
	until, ok := d.subs[sub]
	return ok && sub != (subject{}) && !now.After(until) && !exp.After(until)
}

// counted updates n; d.mu must be held for writing.
func (d *denylist) counted() { d.n.Store(int64(len(d.jtis) + len(d.sids) + len(d.subs))) }

// maxSubjectLogouts is how many tokens without a session one subject can
// log out, on one instance, before its further logouts fold into one
// revocation of the subject: every token of it that expires by the
// logged-out one's time. Repeated logouts of tokens a client can get
// cheaply (from an IdP, say) then keep one entry per subject, not one per
// token.
const maxSubjectLogouts = 8

type logoutCount struct {
	n     int
	until time.Time
}

// fold counts one logout of a token of subject sub that expires by until
// and reports whether it should be revoked by subject rather than by jti.
func (d *denylist) fold(sub subject, now, until time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.logouts[sub]
	if c.until.Before(now) {
		c = logoutCount{}
	}
	c.n++
	c.until = later(c.until, until)
	d.logouts[sub] = c
	return c.n > maxSubjectLogouts
}

// forgetEvery runs forget at most once per period, so that a fleet's
// full read of the revocations, which denies every entry, does not scan
// them each time.
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
	forgetBefore(d.jtis, now)
	forgetBefore(d.sids, now)
	forgetBefore(d.subs, now)
	for k, c := range d.logouts {
		if c.until.Before(now) {
			delete(d.logouts, k)
		}
	}
	d.counted()
}

func forgetBefore[K comparable](m map[K]time.Time, now time.Time) {
	for k, t := range m {
		if t.Before(now) {
			delete(m, k)
		}
	}
}

// extend denies id in table m (jtis, sids or subs) until the given time,
// never shortening an existing denial. An entry already known (a fleet
// reading the whole list again) takes only the read lock, so the token
// path (which reads the denylist) is not held up.
func extend[K comparable](d *denylist, m map[K]time.Time, id K, until time.Time) {
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
