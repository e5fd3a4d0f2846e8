package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ClaimsFunc maps a session's values to its user; an empty Subject is a
// guest session (counted, never converted). It may look the user up.
type ClaimsFunc func(ctx context.Context, values map[any]any) (LocalUser, error)

// DefaultClaims finds the user ("" or 0: none) under user_id, userID, uid,
// id or user: a string, an integer, or a struct (or pointer) with a field
// ID, UserID, Uid or Subject; its name and roles under username or name,
// roles or role, else in the struct (Username, Name; Roles, Role, Groups).
func DefaultClaims(ctx context.Context, values map[any]any) (LocalUser, error) {
	return sessionUser(values, defaultUserKeys)
}

// UserKey is DefaultClaims with the user under key alone (a string or the
// app's own key type).
func UserKey(key any) ClaimsFunc {
	keys := []any{key}
	return func(_ context.Context, values map[any]any) (LocalUser, error) { return sessionUser(values, keys) }
}

var defaultUserKeys = []any{"user_id", "userID", "uid", "id", "user"}

// Field names, in order of preference, of a user struct in a session.
var (
	idFields   = []string{"ID", "Id", "UserID", "UserId", "Uid", "UID", "Subject"}
	nameFields = []string{"Username", "UserName", "Name", "Login"}
	roleFields = []string{"Roles", "Role", "Groups"}
)

// sessionUser is the user under the first of keys that holds one.
func sessionUser(values map[any]any, keys []any) (LocalUser, error) {
	var u LocalUser
	for _, k := range keys {
		v, ok := values[k]
		if rv := reflect.ValueOf(v); !ok || v == nil || rv.Kind() == reflect.Pointer && rv.IsNil() {
			continue
		}
		if sub, ok := scalarID(v); ok {
			u.Subject = sub
		} else if rv, ok := structOf(v); ok {
			if u.Subject, ok = scalarID(fieldOf(rv, idFields)); !ok {
				return LocalUser{}, fmt.Errorf("bridge: session %q holds a %T without an ID field (%s)", fmt.Sprint(k), v, strings.Join(idFields, ", "))
			}
			u.Name, _ = fieldOf(rv, nameFields).(string)
			u.Roles = rolesOf(fieldOf(rv, roleFields))
		} else {
			return LocalUser{}, fmt.Errorf("bridge: session %q holds a %T, not a user ID", fmt.Sprint(k), v)
		}
		if u.Subject != "" {
			break
		}
	}
	if name, ok := values["username"].(string); ok {
		u.Name = name
	} else if name, ok := values["name"].(string); ok && u.Name == "" {
		u.Name = name
	}
	if roles := rolesOf(values["roles"]); roles != nil {
		u.Roles = roles
	} else if roles := rolesOf(values["role"]); roles != nil && u.Roles == nil {
		u.Roles = roles
	}
	return u, nil
}

// scalarID formats a string or integer ID (a whole float64: a JSON
// serializer's number).
func scalarID(v any) (string, bool) {
	switch id := v.(type) {
	case string:
		return id, true
	case float64:
		if id == math.Trunc(id) && math.Abs(id) < 1<<53 {
			return strconv.FormatFloat(id, 'f', -1, 64), true
		}
		return "", false
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if rv.Int() == 0 {
			return "", true // a zero ID is nobody's (a guest's zero User)
		}
		return strconv.FormatInt(rv.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() == 0 {
			return "", true
		}
		return strconv.FormatUint(rv.Uint(), 10), true
	case reflect.String: // a named string type
		return rv.String(), true
	}
	return "", false
}

// structOf is v as a struct, through one pointer.
func structOf(v any) (reflect.Value, bool) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	return rv, rv.Kind() == reflect.Struct
}

// fieldOf is the first exported field of rv named in names, or nil.
func fieldOf(rv reflect.Value, names []string) any {
	for _, n := range names {
		if f, ok := rv.Type().FieldByName(n); ok && f.IsExported() {
			return rv.FieldByIndex(f.Index).Interface()
		}
	}
	return nil
}

// rolesOf reads roles: a []string, a string, or a JSON serializer's []any.
func rolesOf(v any) []string {
	switch roles := v.(type) {
	case []string:
		return slices.Clone(roles)
	case string:
		if roles != "" {
			return []string{roles}
		}
	case []any:
		var out []string
		for _, r := range roles {
			if s, ok := r.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
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
func (b *Bridge) mintFor(ctx context.Context, values map[any]any, sessionTTL time.Duration, sid, sch string, now time.Time) (string, *Claims, error) {
	u, err := b.cfg.ClaimsFromSession(ctx, values)
	if err != nil {
		return "", nil, err
	}
	if u.Subject == "" {
		return "", nil, errNoSubject
	}
	c := Claims{Name: u.Name, Roles: slices.Clone(u.Roles)}
	c.Subject = u.Subject
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
