package bridge

import (
	"strings"
	"testing"
	"time"
)

// Tokens that share the hashed tail share a slot: a lookup returns the
// entry of its own token only, and the later put replaces the earlier.
func TestTokenCacheSameTail(t *testing.T) {
	now := time.Now()
	c := newTokenCache(DefaultCacheSize)
	tail := strings.Repeat("s", hashedTail)
	a, b := "header.payloadA."+tail, "header.payloadB."+tail
	if c.hash(a) != c.hash(b) {
		t.Fatalf("tokens with the same %d-character tail hash differently", hashedTail)
	}
	ea := &cacheEntry{exp: now.Add(time.Hour)}
	c.put(a, ea, now)
	if got := c.get(a, now); got != ea {
		t.Fatalf("get(a) = %p, want %p", got, ea)
	}
	if got := c.get(b, now); got != nil {
		t.Fatalf("get(b) returned a's entry")
	}
	eb := &cacheEntry{exp: now.Add(time.Hour)}
	c.put(b, eb, now)
	if c.get(a, now) != nil || c.get(b, now) != eb {
		t.Errorf("after put(b): a still cached or b missing")
	}
	// Short tokens are hashed whole.
	if c.hash("x") == c.hash("y") {
		t.Errorf("short tokens hash alike")
	}
}

// The denylist's count, which lets a check skip the lock while nothing is
// revoked, follows every change; a subject's revocation refuses its tokens
// that expire by its time, not later ones.
func TestDenylistCount(t *testing.T) {
	now := time.Now()
	d := newDenylist()
	has := func(jti, sid string) bool { return d.has(jti, sid, subject{}, time.Time{}, now) }
	if d.n.Load() != 0 || has("j", "s") {
		t.Fatalf("new denylist: n=%d", d.n.Load())
	}
	extend(d, d.jtis, "j", now.Add(time.Minute))
	extend(d, d.sids, "s", now.Add(time.Hour))
	extend(d, d.jtis, "k", now.Add(time.Minute))
	extend(d, d.jtis, "k", now.Add(2*time.Minute)) // same entry, later
	extend(d, d.subs, subject{"iss", "u"}, now.Add(10*time.Minute))
	if got := d.n.Load(); got != 4 {
		t.Errorf("after 4 revocations: n=%d", got)
	}
	if !has("j", "") || !has("", "s") || !has("k", "") || has("other", "") {
		t.Errorf("has disagrees with the revocations")
	}
	for _, tc := range []struct {
		sub  subject
		exp  time.Time
		want bool
	}{
		{subject{"iss", "u"}, now.Add(5 * time.Minute), true},
		{subject{"iss", "u"}, now.Add(10 * time.Minute), true},
		{subject{"iss", "u"}, now.Add(11 * time.Minute), false}, // issued after the revocation
		{subject{"other", "u"}, now.Add(5 * time.Minute), false},
		{subject{"", "u"}, now.Add(5 * time.Minute), false},
		{subject{}, now, false},
	} {
		if got := d.has("", "", tc.sub, tc.exp, now); got != tc.want {
			t.Errorf("has(sub %q, exp +%v) = %v, want %v", tc.sub, tc.exp.Sub(now), got, tc.want)
		}
	}
	// Past its time an entry denies nothing, before forget drops it.
	if d.has("j", "", subject{}, time.Time{}, now.Add(3*time.Minute)) {
		t.Errorf("an expired jti still denies")
	}
	d.forget(now.Add(3 * time.Minute))
	if got := d.n.Load(); got != 2 || !has("", "s") || has("j", "") {
		t.Errorf("after forgetting the jtis: n=%d", got)
	}
	d.forget(now.Add(2 * time.Hour))
	if got := d.n.Load(); got != 0 || has("", "s") {
		t.Errorf("after forgetting all: n=%d", got)
	}
}

// A subject's logouts of tokens without a session fold into one
// revocation of the subject past maxSubjectLogouts, per window.
func TestDenylistFold(t *testing.T) {
	now := time.Now()
	d := newDenylist()
	for i := 1; i <= maxSubjectLogouts; i++ {
		if d.fold(subject{"iss", "u"}, now, now.Add(time.Minute)) {
			t.Fatalf("logout %d folded, want only past %d", i, maxSubjectLogouts)
		}
	}
	if !d.fold(subject{"iss", "u"}, now, now.Add(time.Minute)) {
		t.Errorf("logout %d not folded", maxSubjectLogouts+1)
	}
	if d.fold(subject{"iss", "other"}, now, now.Add(time.Minute)) {
		t.Errorf("another subject folded")
	}
	// Once the window's tokens have expired, the count starts again.
	if d.fold(subject{"iss", "u"}, now.Add(2*time.Minute), now.Add(3*time.Minute)) {
		t.Errorf("folded after the window")
	}
	d.forget(now.Add(time.Hour))
	if len(d.logouts) != 0 {
		t.Errorf("counts not forgotten: %v", d.logouts)
	}
	// A subject revocation without an issuer or a sub denies nothing (it
	// would match a session's check, which names no subject).
	b := newTestBridge(t, nil)
	for _, s := range []string{"", " ", "iss", "iss ", " u"} {
		b.Deny(Revocation{Subject: s, Until: now.Add(time.Hour)})
	}
	if n := b.revoked.n.Load(); n != 0 {
		t.Errorf("malformed subject revocations kept: %d", n)
	}
}
