package legacyapp

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// CartStore keeps carts by user ID, outside the session. Moving such data
// out of the session is what a monolith must do before its sessions can be
// retired: a JWT carries who the user is, not their cart.
type CartStore interface {
	Items(ctx context.Context, userID string) ([]string, error)
	Add(ctx context.Context, userID, item string) error
}

// RedisCarts keeps each user's cart in a Redis list "cart:<user ID>" that
// expires 30 days after its last change.
func RedisCarts(c redis.UniversalClient) CartStore { return redisCarts{c} }

type redisCarts struct{ c redis.UniversalClient }

const cartTTL = 30 * 24 * time.Hour

func (s redisCarts) Items(ctx context.Context, userID string) ([]string, error) {
	items, err := s.c.LRange(ctx, "cart:"+userID, 0, maxCartItems-1).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: cart: %w", ErrUnavailable, err)
	}
	return items, nil
}

func (s redisCarts) Add(ctx context.Context, userID, item string) error {
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, "cart:"+userID, item)
		p.Expire(ctx, "cart:"+userID, cartTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: cart: %w", ErrUnavailable, err)
	}
	return nil
}
