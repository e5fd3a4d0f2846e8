package bridge

import (
	"context"
	"crypto/sha256"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// cacheEntry is a verified token with the identities built from it once,
// in one allocation, so that a repeat token costs a map lookup and no
// allocation. Nothing in it changes once it is made (but for linked, set
// once): the middleware puts a pointer to one of its identities in the
// request context, and IdentityFrom hands the handler a copy.
type cacheEntry struct {
	claims *Claims
	exp    time.Time
	iss    *issuer
	// jti and sid are the token's keys in the denylist: its jti (scoped
	// by issuer for a trusted issuer's token, or a hash of the token when
	// it has none) and, for a token of Config.Issuer only, its sid.
	jti, sid string
	bearer   Identity
	cookie   Identity
	// linked holds the identities a trusted issuer's Link resolved.
	linked atomic.Pointer[[2]Identity]
	// bound is the last legacy session cookie found to hold the session
	// the token was minted from.
	bound atomic.Pointer[string]
}

func (e *cacheEntry) revokedAt(d *denylist, now time.Time) bool {
	return d.has(e.jti, e.sid, e.subject(), e.exp, now)
}

func (e *cacheEntry) subject() subject { return subject{e.claims.Issuer, e.claims.Subject} }

func (e *cacheEntry) boundTo(sessionCookie string) bool {
	p := e.bound.Load()
	return p != nil && *p == sessionCookie
}

func (e *cacheEntry) bind(sessionCookie string) { e.bound.Store(&sessionCookie) }

func newCacheEntry(tok string, c *Claims, iss *issuer) *cacheEntry {
	e := &cacheEntry{claims: c, iss: iss, jti: c.ID}
	if c.ExpiresAt != nil {
		e.exp = c.ExpiresAt.Time
	}
	e.bearer = Identity{issuer: c.Issuer, name: c.Name, claims: c, expiresAt: e.exp, token: tok, source: SourceJWTBearer}
	if iss.own {
		// Our own token: its sub is a local user, its roles ours.
		e.bearer.subject, e.bearer.roles, e.sid = c.Subject, c.Roles, c.SID
	} else {
		// A trusted issuer's identity is its own: no local user (unless
		// Link says so), no local roles, revoked within its issuer.
		e.jti = revocationJTI(c.Issuer, c.ID, tok)
	}
	e.cookie = e.bearer
	e.cookie.source = SourceJWTCookie
	return e
}

// revocationJTI is the denylist key of a trusted issuer's token: its
// issuer and jti, or a hash of the token itself when it has no jti.
func revocationJTI(issuer, jti, tok string) string {
	if jti == "" {
		sum := sha256.Sum256([]byte(tok))
		jti = "#" + b64(sum[:18])
	}
	return issuer + " " + jti
}

// identities returns the entry's bearer and cookie identities, linked to
// a local user by the issuer's Link, if it has one. A Link that fails
// leaves the identity unlinked for this request, and is asked again next
// time.
func (e *cacheEntry) identities(ctx context.Context, log *slog.Logger) (*Identity, *Identity) {
	if e.iss.link == nil {
		return &e.bearer, &e.cookie
	}
	if p := e.linked.Load(); p != nil {
		return &p[0], &p[1]
	}
	u, ok, err := e.iss.link(ctx, e.claims.clone())
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "bridge: identity not linked to a local user",
			slog.String("issuer", capped(e.claims.Issuer)), slog.String("error", err.Error()))
		return &e.bearer, &e.cookie
	}
	ids := [2]Identity{e.bearer, e.cookie}
	if ok && u.Subject != "" {
		for i := range ids {
			ids[i].subject, ids[i].roles = u.Subject, slices.Clone(u.Roles)
			if u.Name != "" {
				ids[i].name = u.Name
			}
		}
	}
	e.linked.CompareAndSwap(nil, &ids)
	p := e.linked.Load()
	return &p[0], &p[1]
}

const cacheShards = 16

// tokenCache is a bounded cache of verified tokens: it holds at most the
// size it was made with. A token is hashed once (seeded maphash): the hash
// picks the shard and keys the shard's map, whose slot keeps the token to
// compare with the one looked up (two tokens of the same hash share a
// slot, the later one replacing the earlier). Entries are never returned
// past their exp; when a shard is full, expired entries go first, then
// arbitrary ones.
type tokenCache struct {
	seed     maphash.Seed
	nshards  uint64 // shards in use: min(size, cacheShards)
	perShard int
	shards   [cacheShards]struct {
		sync.RWMutex
		m map[uint64]cacheSlot
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
		c.shards[i].m = make(map[uint64]cacheSlot)
	}
	return c
}

type cacheSlot struct {
	tok string
	e   *cacheEntry
}

// hashedTail is how much of a token's end is hashed: the last 32
// characters of its signature, 24 bytes. Only verified tokens are stored,
// and no one chooses the signature of a verified token, so the tail
// spreads them as well as the whole token would, at a fraction of the
// hashing cost. A token made to share a stored token's tail finds a slot
// whose token differs: a miss, and then a verification that fails.
const hashedTail = 32

func (c *tokenCache) hash(tok string) uint64 {
	return maphash.String(c.seed, tok[max(len(tok)-hashedTail, 0):])
}

func (c *tokenCache) shard(h uint64) int { return int(h % c.nshards) }

func (c *tokenCache) get(tok string, now time.Time) *cacheEntry {
	if c.perShard == 0 {
		return nil
	}
	h := c.hash(tok)
	s := &c.shards[c.shard(h)]
	s.RLock()
	slot := s.m[h]
	s.RUnlock()
	if slot.e == nil || slot.tok != tok || !now.Before(slot.e.exp) {
		return nil
	}
	return slot.e
}

func (c *tokenCache) put(tok string, e *cacheEntry, now time.Time) {
	if c.perShard == 0 {
		return
	}
	h := c.hash(tok)
	s := &c.shards[c.shard(h)]
	s.Lock()
	defer s.Unlock()
	if len(s.m) >= c.perShard {
		// Make room for an eighth of the shard at once, expired entries
		// first, so that the scan is paid once per perShard/8 inserts
		// rather than on every insert into a full shard.
		room := c.perShard - max(c.perShard/8, 1)
		for k, old := range s.m {
			if !now.Before(old.e.exp) {
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
	s.m[h] = cacheSlot{tok, e}
}

// purgeIf drops the cached tokens drop selects and returns how many.
func (c *tokenCache) purgeIf(drop func(*cacheEntry) bool) int {
	n := 0
	for i := range c.nshards {
		s := &c.shards[i]
		s.Lock()
		for k, slot := range s.m {
			if drop(slot.e) {
				delete(s.m, k)
				n++
			}
		}
		s.Unlock()
	}
	return n
}

// purge drops every cached token.
func (c *tokenCache) purge() { c.purgeIf(func(*cacheEntry) bool { return true }) }
