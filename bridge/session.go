package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// Session is a legacy session as read by a SessionSource. ID is the raw
// session ID: a credential, never logged, never put in a token.
type Session struct {
	ID     string
	Values map[any]any
	// TTL is the session's remaining lifetime in the store; 0 when the
	// source cannot tell.
	TTL time.Duration
}

// SessionSource reads the legacy session of a request without saving or
// extending it. Load returns an error wrapping ErrNoSession when the
// request has no session cookie, ErrSessionInvalid when the cookie fails
// verification, ErrSessionNotFound when it names no live session, and
// ErrStoreUnavailable when the store cannot answer in time, and
// ErrSessionUndecodable when the stored values cannot be decoded.
type SessionSource interface {
	CookieName() string
	Load(r *http.Request) (*Session, error)
	// Delete removes the session from the store (logout, retirement).
	Delete(ctx context.Context, s *Session) error
}

// StoreSource reads sessions through the app's own gorilla sessions.Store
// and session name, so that any store works and a legacy handler later in
// the same request reuses the session gorilla already loaded (store.Get
// caches it in the request's registry): one Redis read per request.
//
// The remaining TTL is not known through this interface, so tokens minted
// from it last Config.TokenTTL; the sliding re-mint checks that the session
// still exists.
func StoreSource(store sessions.Store, name string) SessionSource {
	return &storeSource{store: store, name: name}
}

type storeSource struct {
	store sessions.Store
	name  string
}

func (s *storeSource) CookieName() string { return s.name }

func (s *storeSource) Load(r *http.Request) (*Session, error) {
	c, err := r.Cookie(s.name)
	if err != nil || c.Value == "" {
		return nil, ErrNoSession
	}
	// securecookie reports an oversized value with a plain error, which
	// would read as the store failing: refuse it here, before any I/O.
	if len(c.Value) > maxCookieSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrSessionInvalid, len(c.Value))
	}
	sess, err := s.store.Get(r, s.name)
	if err != nil {
		var scErr securecookie.Error
		if errors.As(err, &scErr) && scErr.IsDecode() {
			return nil, fmt.Errorf("%w: %w", ErrSessionInvalid, err)
		}
		if errors.Is(err, redisstore.ErrUnregisteredType) {
			return nil, fmt.Errorf("%w: %w", ErrSessionUndecodable, err)
		}
		// bridge/redisstore fails only to reach Redis (ErrUnavailable),
		// to verify the cookie or to decode the values: the rest is
		// data it cannot decode, which no retry will fix.
		if _, ok := s.store.(*redisstore.Store); ok && !errors.Is(err, redisstore.ErrUnavailable) {
			return nil, fmt.Errorf("%w: %w", ErrSessionUndecodable, err)
		}
		// Anything else may be the store failing: never treat it as
		// "logged out".
		return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if sess.IsNew {
		return nil, ErrSessionNotFound
	}
	id := sess.ID
	if id == "" {
		// A store without server-side IDs (sessions.CookieStore): the
		// cookie itself identifies the session; it is only ever hashed.
		id = c.Value
	}
	return &Session{ID: id, Values: sess.Values}, nil
}

func (s *storeSource) Delete(ctx context.Context, sess *Session) error {
	if d, ok := s.store.(interface {
		Delete(context.Context, string) error
	}); ok {
		if err := d.Delete(ctx, sess.ID); err != nil {
			return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		return nil
	}
	return errors.New("bridge: the session store cannot delete by ID; delete the session in the app's logout")
}

// RedisSourceConfig configures a read-only source that decodes the legacy
// cookie and reads the session straight from Redis.
type RedisSourceConfig struct {
	// Client is the Redis client. Required.
	Client redis.UniversalClient
	// CookieName is the legacy cookie's name. Required.
	CookieName string
	// KeyPrefix is prepended to the session ID to form the Redis key.
	KeyPrefix string
	// KeyPairs are the securecookie hash and block key pairs, newest first,
	// that sign the cookie's ID; nil when the cookie holds the raw ID.
	KeyPairs [][]byte
	// Serializer decodes the stored values. Default gob.
	Serializer redisstore.Serializer
	// Timeout bounds each read. Default 500ms.
	Timeout time.Duration
}

// BojSource reads sessions in github.com/boj/redistore's format (and
// bridge/redisstore's): a securecookie-signed ID under the session name,
// key "session_"+ID, gob values (use RedisSource for the JSON serializer or
// another prefix).
func BojSource(client redis.UniversalClient, name string, keyPairs ...[]byte) (SessionSource, error) {
	return RedisSource(RedisSourceConfig{Client: client, CookieName: name, KeyPrefix: "session_", KeyPairs: keyPairs})
}

// RbcervillaSource reads sessions in github.com/rbcervilla/redisstore's
// format: the raw ID as the cookie value, key "session:"+ID, gob values.
func RbcervillaSource(client redis.UniversalClient, name string) (SessionSource, error) {
	return RedisSource(RedisSourceConfig{Client: client, CookieName: name, KeyPrefix: "session:"})
}

// RedisSource returns a read-only Redis session source for cfg. Each load
// is one round trip (GET and PTTL in a pipeline) that also yields the
// remaining TTL.
func RedisSource(cfg RedisSourceConfig) (SessionSource, error) {
	if cfg.Client == nil {
		return nil, errors.New("bridge: RedisSourceConfig.Client is required")
	}
	if cfg.CookieName == "" {
		return nil, errors.New("bridge: RedisSourceConfig.CookieName is required")
	}
	s := &redisSource{cfg: cfg}
	if len(cfg.KeyPairs) > 0 {
		s.codecs = securecookie.CodecsFromPairs(cfg.KeyPairs...)
		for _, c := range s.codecs {
			if sc, ok := c.(*securecookie.SecureCookie); ok {
				sc.MaxAge(redisstore.DefaultMaxAge)
			}
		}
	}
	if s.cfg.Serializer == nil {
		s.cfg.Serializer = redisstore.GobSerializer{}
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = redisstore.DefaultTimeout
	}
	return s, nil
}

type redisSource struct {
	cfg    RedisSourceConfig
	codecs []securecookie.Codec
}

func (s *redisSource) CookieName() string { return s.cfg.CookieName }

// maxCookieSize is the size above which a legacy cookie is refused without
// decoding (browsers keep at most 4096 bytes per cookie).
const maxCookieSize = 4096

func (s *redisSource) Load(r *http.Request) (*Session, error) {
	c, err := r.Cookie(s.cfg.CookieName)
	if err != nil || c.Value == "" {
		return nil, ErrNoSession
	}
	if len(c.Value) > maxCookieSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrSessionInvalid, len(c.Value))
	}
	id := c.Value
	if s.codecs != nil {
		id = ""
		if err := securecookie.DecodeMulti(s.cfg.CookieName, c.Value, &id, s.codecs...); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSessionInvalid, err)
		}
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty session ID", ErrSessionInvalid)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	key := s.cfg.KeyPrefix + id
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err = s.cfg.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, key)
		ttl = p.PTTL(ctx, key)
		return nil
	})
	if errors.Is(err, redis.Nil) || errors.Is(get.Err(), redis.Nil) {
		return nil, ErrSessionNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	data, _ := get.Bytes()
	sess := &Session{ID: id, Values: make(map[any]any)}
	if err := s.cfg.Serializer.Deserialize(data, sess.Values); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSessionUndecodable, err)
	}
	if d := ttl.Val(); d > 0 {
		sess.TTL = d
	}
	return sess, nil
}

func (s *redisSource) Delete(ctx context.Context, sess *Session) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.cfg.Client.Del(ctx, s.cfg.KeyPrefix+sess.ID).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return nil
}
