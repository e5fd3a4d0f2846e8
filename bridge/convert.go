package bridge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ClaimsFunc builds claims (subject, custom ones) from session values;
// the bridge sets the rest. A session without a subject is not converted.
type ClaimsFunc func(values map[any]any) (Claims, error)

// DefaultClaims maps user_id to sub, username to name, and roles ([]string
// or string) or role to roles. A numeric user_id is formatted in decimal.
func DefaultClaims(values map[any]any) (Claims, error) {
	var c Claims
	switch id := values["user_id"].(type) {
	case string:
		c.Subject = id
	case int:
		c.Subject = strconv.Itoa(id)
	case int64:
		c.Subject = strconv.FormatInt(id, 10)
	case uint64:
		c.Subject = strconv.FormatUint(id, 10)
	case float64: // JSON-serialized sessions
		c.Subject = strconv.FormatFloat(id, 'f', -1, 64)
	case nil:
	default:
		return c, fmt.Errorf("bridge: session user_id of type %T", id)
	}
	c.Name, _ = values["username"].(string)
	switch roles := values["roles"].(type) {
	case []string:
		c.Roles = append([]string(nil), roles...)
	case string:
		c.Roles = []string{roles}
	case []any: // JSON-serialized sessions
		for _, r := range roles {
			if s, ok := r.(string); ok {
				c.Roles = append(c.Roles, s)
			}
		}
	}
	if role, ok := values["role"].(string); ok && len(c.Roles) == 0 {
		c.Roles = []string{role}
	}
	return c, nil
}

// sidHash is the keyed hash of a session ID that tokens carry as sid and
// that decides the rollout: never the raw ID. Every session request
// computes it, so the keyed HMACs are pooled rather than made anew (one
// hmac.New is eight allocations).
type sidHash struct {
	key  []byte
	macs sync.Pool // of *sidMAC
}

type sidMAC struct {
	mac hash.Hash
	in  []byte
	out [sha256.Size]byte
}

func newSIDHash(key []byte) *sidHash { return &sidHash{key: key} }

func (h *sidHash) sum(id string) [sha256.Size]byte {
	m, _ := h.macs.Get().(*sidMAC)
	if m == nil {
		m = &sidMAC{mac: hmac.New(sha256.New, h.key)}
	}
	m.mac.Reset()
	m.in = append(m.in[:0], id...)
	m.mac.Write(m.in)
	m.mac.Sum(m.out[:0])
	out := m.out
	if cap(m.in) <= 1024 { // a huge cookie's buffer is not kept
		h.macs.Put(m)
	}
	return out
}

// cookieHash returns the sch claim for a legacy session cookie's value: a
// keyed hash, apart from the sids by its prefix.
func (h *sidHash) cookieHash(value string) string {
	s := h.sum("\x00cookie " + value)
	return b64(s[:12])
}

// sid returns the sid claim for a session ID.
func (h *sidHash) sid(id string) string {
	s := h.sum(id)
	return b64(s[:18])
}

// inRollout reports whether the session falls within percent: the same
// session always gets the same answer.
func (h *sidHash) inRollout(id string, percent int) bool {
	if percent >= 100 {
		return true
	}
	if percent <= 0 {
		return false
	}
	s := h.sum(id)
	return binary.BigEndian.Uint64(s[18:26])%100 < uint64(percent)
}

var errNoSubject = errors.New("bridge: session has no subject to put in a token")

// mintFor mints a token for session values: claims from the mapping, a
// new jti, the session's sid hash, and an exp that never outlives the
// session (sessionTTL, when known, i.e. > 0).
func (b *Bridge) mintFor(values map[any]any, sessionTTL time.Duration, sid, sch string, now time.Time) (string, *Claims, error) {
	c, err := b.cfg.ClaimsFromSession(values)
	if err != nil {
		return "", nil, err
	}
	if c.Subject == "" {
		return "", nil, errNoSubject
	}
	ttl := b.cfg.TokenTTL
	if sessionTTL > 0 && sessionTTL < ttl {
		ttl = sessionTTL
	}
	if ttl < time.Second {
		return "", nil, errors.New("bridge: session expires too soon to convert")
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	c.Issuer = b.cfg.Issuer
	c.Audience = jwt.ClaimStrings{b.cfg.Audience}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	c.ID = b64(jti[:])
	c.SID, c.SCH = sid, sch
	tok, err := mint(b.cfg.SigningKey, &c)
	if err != nil {
		return "", nil, err
	}
	return tok, &c, nil
}
