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
// revoked, follows every change.
func TestDenylistCount(t *testing.T) {
	now := time.Now()
	d := newDenylist()
	if d.n.Load() != 0 || d.has("j", "s") {
		t.Fatalf("new denylist: n=%d", d.n.Load())
	}
	d.extend(d.jtis, "j", now.Add(time.Minute))
	d.extend(d.sids, "s", now.Add(time.Hour))
	d.extend(d.jtis, "k", now.Add(time.Minute))
	d.extend(d.jtis, "k", now.Add(2*time.Minute)) // same entry, later
	if got := d.n.Load(); got != 3 {
		t.Errorf("after 3 revocations: n=%d", got)
	}
	if !d.has("j", "") || !d.has("", "s") || !d.has("k", "") || d.has("other", "") {
		t.Errorf("has disagrees with the revocations")
	}
	d.forget(now.Add(3 * time.Minute))
	if got := d.n.Load(); got != 1 || !d.has("", "s") || d.has("j", "") {
		t.Errorf("after forgetting the jtis: n=%d", got)
	}
	d.forget(now.Add(2 * time.Hour))
	if got := d.n.Load(); got != 0 || d.has("", "s") {
		t.Errorf("after forgetting all: n=%d", got)
	}
}
