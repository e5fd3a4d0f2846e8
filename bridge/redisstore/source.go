package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge"
)

// SourceConfig configures a read-only session source that decodes the
// legacy cookie and reads the session straight from Redis, for a
// bridge.Config's Sessions.
type SourceConfig struct {
	// Client is the Redis client. Required.
	Client redis.UniversalClient
	// CookieName is the legacy cookie's name. Required.
	CookieName string
	// KeyPrefix is prepended to the session ID to form the Redis key.
	KeyPrefix string
	// KeyPairs are the securecookie hash and block key pairs, newest first,
	// that sign the cookie's ID; nil when the cookie holds the raw ID.
	KeyPairs [][]byte
	// Serializer decodes the stored values. Default GobSerializer.
	Serializer Serializer
	// Timeout bounds each read. Default 500ms.
	Timeout time.Duration
}

// BojSource reads sessions in github.com/boj/redistore's format (and this
// package's Store's): a securecookie-signed ID under the session name, key
// "session_"+ID, gob values (use NewSource for the JSON serializer or
// another prefix).
func BojSource(client redis.UniversalClient, name string, keyPairs ...[]byte) (bridge.SessionSource, error) {
	return NewSource(SourceConfig{Client: client, CookieName: name, KeyPrefix: DefaultKeyPrefix, KeyPairs: keyPairs})
}

// RbcervillaKeyPrefix is github.com/rbcervilla/redisstore's default key
// prefix.
const RbcervillaKeyPrefix = "session:"

// RbcervillaSource reads sessions in github.com/rbcervilla/redisstore's
// format: the raw ID as the cookie value, key keyPrefix+ID, gob values.
// keyPrefix is the store's (its KeyPrefix method sets it; rbcervilla's
// README sets "session_"); "" is its default, RbcervillaKeyPrefix.
func RbcervillaSource(client redis.UniversalClient, name, keyPrefix string) (bridge.SessionSource, error) {
	if keyPrefix == "" {
		keyPrefix = RbcervillaKeyPrefix
	}
	return NewSource(SourceConfig{Client: client, CookieName: name, KeyPrefix: keyPrefix})
}

// NewSource returns a read-only Redis session source for cfg. Each load
// is one round trip (GET and PTTL in a pipeline) that also yields the
// remaining TTL, so that minted tokens never outlive the session.
func NewSource(cfg SourceConfig) (bridge.SessionSource, error) {
	if cfg.Client == nil {
		return nil, errors.New("redisstore: SourceConfig.Client is required")
	}
	if cfg.CookieName == "" {
		return nil, errors.New("redisstore: SourceConfig.CookieName is required")
	}
	// A key prefix that is not the app's makes every session unknown:
	// the error names the prefix looked up (never the ID).
	s := &source{cfg: cfg, notFound: fmt.Errorf("%w: no Redis key %q+ID", bridge.ErrSessionNotFound, cfg.KeyPrefix)}
	if len(cfg.KeyPairs) > 0 {
		s.codecs = securecookie.CodecsFromPairs(cfg.KeyPairs...)
		for _, c := range s.codecs {
			if sc, ok := c.(*securecookie.SecureCookie); ok {
				sc.MaxAge(DefaultMaxAge)
			}
		}
	}
	if s.cfg.Serializer == nil {
		s.cfg.Serializer = GobSerializer{}
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = DefaultTimeout
	}
	return s, nil
}

type source struct {
	cfg      SourceConfig
	codecs   []securecookie.Codec
	notFound error
}

func (s *source) CookieName() string { return s.cfg.CookieName }

func (s *source) Load(r *http.Request) (*bridge.Session, error) {
	c, err := r.Cookie(s.cfg.CookieName)
	if err != nil || c.Value == "" {
		return nil, bridge.ErrNoSession
	}
	id := c.Value
	if s.codecs != nil {
		id = ""
		if err := securecookie.DecodeMulti(s.cfg.CookieName, c.Value, &id, s.codecs...); err != nil {
			return nil, fmt.Errorf("%w: %w", bridge.ErrSessionInvalid, err)
		}
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty session ID", bridge.ErrSessionInvalid)
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
		return nil, s.notFound
	}
	if err != nil {
		return nil, unavailable("load", err)
	}
	data, _ := get.Bytes()
	sess := &bridge.Session{ID: id, Values: make(map[any]any)}
	if err := s.cfg.Serializer.Deserialize(data, sess.Values); err != nil {
		return nil, undecodable(err)
	}
	if d := ttl.Val(); d > 0 {
		sess.TTL = d
	}
	return sess, nil
}

func (s *source) Delete(ctx context.Context, sess *bridge.Session) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.cfg.Client.Del(ctx, s.cfg.KeyPrefix+sess.ID).Err(); err != nil {
		return unavailable("delete", err)
	}
	return nil
}
