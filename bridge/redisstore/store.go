// Package redisstore is a gorilla/sessions Store on go-redis v9 that reads
// and writes exactly the format of github.com/boj/redistore: a monolith can
// swap its redigo-based boj store for this one without logging anyone out.
//
// The format:
//   - cookie value: securecookie.EncodeMulti(name, session.ID, codecs...);
//   - Redis key: prefix + session.ID (default prefix "session_");
//   - Redis value: the serialized session.Values (gob by default, JSON as an
//     option), written with SETEX for the session's MaxAge;
//   - session IDs: unpadded base32 of 32 random bytes.
//
// As in boj/redistore, saving a session whose Options.MaxAge is 0 or less
// deletes it from Redis and expires its cookie.
//
// Errors keep their causes: a Redis that cannot be reached wraps
// ErrUnavailable (and so bridge.ErrStoreUnavailable), a session too large
// wraps ErrTooLarge, values that cannot be decoded wrap
// bridge.ErrSessionUndecodable (a gob value of an unregistered type wraps
// ErrUnregisteredType too, and names the type and its gob.Register call). A cookie naming no session
// in Redis is not an error: Get returns a new, empty session, as every
// gorilla store does. bridge.StoreSource tells these apart.
//
// The package also has read-only session sources for a bridge.Config's
// Sessions, in boj/redistore's format (BojSource), rbcervilla/redisstore's
// (RbcervillaSource) or another (NewSource).
package redisstore

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// Defaults of Config fields left zero.
const (
	DefaultKeyPrefix = "session_"
	DefaultMaxLength = 4096
	DefaultTimeout   = 500 * time.Millisecond
	// DefaultMaxAge is the cookie and Redis lifetime of a session, in
	// seconds: 30 days, as boj/redistore.
	DefaultMaxAge = 86400 * 30
)

var (
	// ErrUnavailable wraps every failure to reach Redis or get an answer
	// from it in time. It wraps bridge.ErrStoreUnavailable.
	ErrUnavailable = fmt.Errorf("redisstore: redis unavailable: %w", bridge.ErrStoreUnavailable)
	// ErrTooLarge reports serialized values longer than Config.MaxLength.
	ErrTooLarge = errors.New("redisstore: session values too large")
)

// Config configures a Store.
type Config struct {
	// Client is the Redis client: a *redis.Client, a sentinel failover
	// client or a *redis.ClusterClient. Required. Set
	// ContextTimeoutEnabled on it so that per-call deadlines are honoured.
	Client redis.UniversalClient

	// KeyPairs are securecookie hash and block key pairs, newest first, as
	// for sessions.NewCookieStore: cookies under any pair still decode
	// (key rotation); new cookies use the first. Required (at least a hash
	// key of 32 or 64 bytes).
	KeyPairs [][]byte

	// KeyPrefix is prepended to the session ID to form the Redis key.
	// Default "session_" (boj/redistore's).
	KeyPrefix string

	// Serializer encodes session values. Default GobSerializer.
	Serializer Serializer

	// Options are the cookie options of new sessions. Default Path "/",
	// MaxAge DefaultMaxAge, HttpOnly.
	Options *sessions.Options

	// MaxLength caps the serialized values, in bytes; a larger session
	// fails to save with ErrTooLarge. Default 4096; negative means no cap.
	MaxLength int

	// Timeout bounds each Redis call. Default 500ms.
	Timeout time.Duration
}

// Store is a gorilla sessions.Store backed by Redis in boj/redistore's
// format. It is safe for concurrent use.
type Store struct {
	client     redis.UniversalClient
	codecs     []securecookie.Codec
	prefix     string
	serializer Serializer
	options    sessions.Options
	maxLength  int
	timeout    time.Duration
}

var _ sessions.Store = (*Store)(nil)

// New returns a Store for cfg, or an error naming the field that is wrong.
// It does no I/O.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("redisstore: Config.Client is required")
	}
	if len(cfg.KeyPairs) == 0 || len(cfg.KeyPairs[0]) == 0 {
		return nil, errors.New("redisstore: Config.KeyPairs needs at least a hash key")
	}
	for i, k := range cfg.KeyPairs {
		if i%2 == 0 && len(k) < 32 {
			return nil, fmt.Errorf("redisstore: Config.KeyPairs[%d]: hash key has %d bytes, want at least 32", i, len(k))
		}
	}
	s := &Store{
		client:     cfg.Client,
		codecs:     securecookie.CodecsFromPairs(cfg.KeyPairs...),
		prefix:     cfg.KeyPrefix,
		serializer: cfg.Serializer,
		maxLength:  cfg.MaxLength,
		timeout:    cfg.Timeout,
		options:    sessions.Options{Path: "/", MaxAge: DefaultMaxAge, HttpOnly: true},
	}
	if cfg.Options != nil {
		s.options = *cfg.Options
	}
	if s.prefix == "" {
		s.prefix = DefaultKeyPrefix
	}
	if s.serializer == nil {
		s.serializer = GobSerializer{}
	}
	if s.maxLength == 0 {
		s.maxLength = DefaultMaxLength
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.options.MaxAge > 0 {
		s.setCodecMaxAge(s.options.MaxAge)
	}
	return s, nil
}

// setCodecMaxAge makes the cookies' signed timestamps valid as long as the
// session, as boj/redistore's SetMaxAge does.
func (s *Store) setCodecMaxAge(age int) {
	for _, c := range s.codecs {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxAge(age)
		}
	}
}

// Get returns the session named name for r, cached in the request's
// registry so that later calls in the same request reuse it.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New returns the session named name for r without caching it: the session
// loaded from Redis if r's cookie names one, otherwise a new session. A
// cookie that does not verify, or a failure of Redis, is returned as an
// error together with a new session.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	session := sessions.NewSession(s, name)
	opts := s.options
	session.Options = &opts
	session.IsNew = true
	c, err := r.Cookie(name)
	if err != nil || c.Value == "" {
		return session, nil
	}
	var id string
	if err := securecookie.DecodeMulti(name, c.Value, &id, s.codecs...); err != nil {
		return session, fmt.Errorf("redisstore: decode cookie %q: %w", name, err)
	}
	session.ID = id
	found, err := s.load(r.Context(), session)
	if err != nil {
		return session, err
	}
	session.IsNew = !found
	return session, nil
}

// Save writes session to Redis and sets its cookie; a MaxAge of 0 or less
// deletes it and expires the cookie.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, session *sessions.Session) error {
	if session.Options == nil {
		opts := s.options
		session.Options = &opts
	}
	if session.Options.MaxAge <= 0 {
		if err := s.delete(r.Context(), session.ID); err != nil {
			return err
		}
		http.SetCookie(w, sessions.NewCookie(session.Name(), "", session.Options))
		return nil
	}
	if session.ID == "" {
		session.ID = NewID()
	}
	if err := s.save(r.Context(), session); err != nil {
		return err
	}
	encoded, err := securecookie.EncodeMulti(session.Name(), session.ID, s.codecs...)
	if err != nil {
		return fmt.Errorf("redisstore: encode cookie %q: %w", session.Name(), err)
	}
	http.SetCookie(w, sessions.NewCookie(session.Name(), encoded, session.Options))
	return nil
}

// NewID returns a new session ID: unpadded base32 of 32 random bytes, as
// boj/redistore.
func NewID() string {
	return strings.TrimRight(base32.StdEncoding.EncodeToString(securecookie.GenerateRandomKey(32)), "=")
}

// Key returns the Redis key of the session with the given ID.
func (s *Store) Key(id string) string { return s.prefix + id }

func (s *Store) save(ctx context.Context, session *sessions.Session) error {
	b, err := s.serializer.Serialize(session.Values)
	if err != nil {
		return err
	}
	if s.maxLength > 0 && len(b) > s.maxLength {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), s.maxLength)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ttl := time.Duration(session.Options.MaxAge) * time.Second
	if err := s.client.SetEx(ctx, s.Key(session.ID), b, ttl).Err(); err != nil {
		return unavailable("save", err)
	}
	return nil
}

func (s *Store) load(ctx context.Context, session *sessions.Session) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b, err := s.client.Get(ctx, s.Key(session.ID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("load", err)
	}
	if err := s.serializer.Deserialize(b, session.Values); err != nil {
		return false, undecodable(err)
	}
	return true, nil
}

// TTL returns the remaining life of the session with the given ID: 0 when
// it does not exist, negative when it never expires. bridge.StoreSource
// asks it once per conversion, so that no token outlives its session.
func (s *Store) TTL(ctx context.Context, id string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d, err := s.client.PTTL(ctx, s.Key(id)).Result()
	switch {
	case err != nil:
		return 0, unavailable("ttl of", err)
	case d == -2: // no such key (go-redis keeps PTTL's -2 and -1 as they are)
		return 0, nil
	case d < 0: // no expiry
		return -1, nil
	}
	return d, nil
}

// Delete removes the session with the given ID from Redis. It does not
// touch any cookie.
func (s *Store) Delete(ctx context.Context, id string) error { return s.delete(ctx, id) }

func (s *Store) delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.client.Del(ctx, s.Key(id)).Err(); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s session: %w", ErrUnavailable, op, err)
}

// undecodable marks an error of Deserialize as data that no retry will
// decode.
func undecodable(err error) error {
	if errors.Is(err, bridge.ErrSessionUndecodable) {
		return err
	}
	return fmt.Errorf("%w: %w", bridge.ErrSessionUndecodable, err)
}
