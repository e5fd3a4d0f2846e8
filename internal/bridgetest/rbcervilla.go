package bridgetest

import (
	"bytes"
	"encoding/gob"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// RbcervillaStore is a gorilla sessions.Store that behaves as
// github.com/rbcervilla/redisstore does, on go-redis v9: the cookie holds
// the raw session ID, the key Prefix+ID holds gob of the values, and a
// Save with MaxAge <= 0 deletes the key and expires the cookie. Like
// rbcervilla's, it has no delete by ID: bridge.StoreSource must delete
// through Save.
type RbcervillaStore struct {
	Client redis.UniversalClient
	Prefix string // "" is redisstore.RbcervillaKeyPrefix
	MaxAge int    // seconds; 0 is 30 days
}

// Key returns the Redis key of the session with the given ID.
func (s *RbcervillaStore) Key(id string) string {
	if s.Prefix == "" {
		return redisstore.RbcervillaKeyPrefix + id
	}
	return s.Prefix + id
}

// Get returns the session of r, cached in the request's registry.
func (s *RbcervillaStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New returns the session r's cookie names, or a new one (with the
// cookie's ID, as rbcervilla's, when the key is gone).
func (s *RbcervillaStore) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	sess.Options = &sessions.Options{Path: "/", MaxAge: s.MaxAge, HttpOnly: true}
	if s.MaxAge == 0 {
		sess.Options.MaxAge = 86400 * 30
	}
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	sess.ID = c.Value
	b, err := s.Client.Get(r.Context(), s.Key(sess.ID)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return sess, nil
	case err != nil:
		return sess, err
	}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&sess.Values); err != nil {
		return sess, err
	}
	sess.IsNew = false
	return sess, nil
}

// Save writes the session, or deletes it when its MaxAge is 0 or less.
func (s *RbcervillaStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	if sess.Options.MaxAge <= 0 {
		if err := s.Client.Del(r.Context(), s.Key(sess.ID)).Err(); err != nil {
			return err
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	if sess.ID == "" {
		sess.ID = strings.ToLower(redisstore.NewID())
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(sess.Values); err != nil {
		return err
	}
	ttl := time.Duration(sess.Options.MaxAge) * time.Second
	if err := s.Client.Set(r.Context(), s.Key(sess.ID), buf.Bytes(), ttl).Err(); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, sess.Options))
	return nil
}

// SaveRbcervillaSession saves values as a session living ttl in
// rbcervilla/redisstore's format under prefix ("" is redisstore.RbcervillaKeyPrefix)
// and returns its cookie and ID.
func SaveRbcervillaSession(t testing.TB, c redis.UniversalClient, prefix string, values map[any]any, ttl time.Duration) (*http.Cookie, string) {
	t.Helper()
	return SaveSession(t, &RbcervillaStore{Client: c, Prefix: prefix, MaxAge: int(ttl / time.Second)}, values)
}
