package bridge

import (
	"hash/maphash"
	"sync"
	"time"
)

// cacheEntry is a verified token with the identities built from it once,
// so that a repeat token costs a map lookup and no allocation.
type cacheEntry struct {
	claims *Claims
	exp    time.Time
	bearer *Identity
	cookie *Identity
}

func newCacheEntry(tok string, c *Claims) *cacheEntry {
	e := &cacheEntry{claims: c}
	if c.ExpiresAt != nil {
		e.exp = c.ExpiresAt.Time
	}
	base := Identity{Subject: c.Subject, Name: c.Name, Roles: c.Roles, Claims: c, ExpiresAt: e.exp, Token: tok}
	bearer, cookie := base, base
	bearer.Source, cookie.Source = SourceJWTBearer, SourceJWTCookie
	e.bearer, e.cookie = &bearer, &cookie
	return e
}

const cacheShards = 16

// tokenCache is a bounded cache of verified tokens keyed by the token
// itself: it holds at most the size it was made with. Entries are never
// returned past their exp; when a shard is full, expired entries go first,
// then arbitrary ones.
type tokenCache struct {
	seed     maphash.Seed
	nshards  uint64 // shards in use: min(size, cacheShards)
	perShard int
	shards   [cacheShards]struct {
		sync.RWMutex
		m map[string]*cacheEntry
	}
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	if size <= 0 {
		return c // perShard 0: disabled
	}
	// Fewer shards than cacheShards for a small size, so that the shards'
	// capacities sum to at most size.
	n := min(size, cacheShards)
	c.nshards, c.perShard = uint64(n), size/n
	for i := range n {
		c.shards[i].m = make(map[string]*cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(tok string) int {
	return int(maphash.String(c.seed, tok) % c.nshards)
}

func (c *tokenCache) get(tok string, now time.Time) *cacheEntry {
	if c.perShard == 0 {
		return nil
	}
	s := &c.shards[c.shard(tok)]
	s.RLock()
	e := s.m[tok]
	s.RUnlock()
	if e == nil || !now.Before(e.exp) {
		return nil
	}
	return e
}

func (c *tokenCache) put(tok string, e *cacheEntry, now time.Time) {
	if c.perShard == 0 {
		return
	}
	s := &c.shards[c.shard(tok)]
	s.Lock()
	defer s.Unlock()
	if len(s.m) >= c.perShard {
		// Make room for an eighth of the shard at once, expired entries
		// first, so that the scan is paid once per perShard/8 inserts
		// rather than on every insert into a full shard.
		room := c.perShard - max(c.perShard/8, 1)
		for k, old := range s.m {
			if !now.Before(old.exp) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) <= room {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[tok] = e
}

// purge drops every cached token (after a revocation or key change).
func (c *tokenCache) purge() {
	for i := range c.nshards {
		s := &c.shards[i]
		s.Lock()
		clear(s.m)
		s.Unlock()
	}
}

// denylist holds revoked token IDs (jti) and session hashes (sid), each
// with the time after which it can be forgotten.
type denylist struct {
	mu   sync.RWMutex
	jtis map[string]time.Time
	sids map[string]time.Time
}

func newDenylist() *denylist {
	return &denylist{jtis: make(map[string]time.Time), sids: make(map[string]time.Time)}
}

func (d *denylist) has(jti, sid string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if _, ok := d.jtis[jti]; ok && jti != "" {
		return true
	}
	_, ok := d.sids[sid]
	return ok && sid != ""
}

func (d *denylist) addJTI(jti string, until time.Time) {
	d.mu.Lock()
	d.jtis[jti] = until
	d.mu.Unlock()
}

func (d *denylist) addSID(sid string, until time.Time) {
	d.mu.Lock()
	d.sids[sid] = until
	d.mu.Unlock()
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
}
