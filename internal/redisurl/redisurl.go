// Package redisurl turns a REDIS_URL into a go-redis UniversalClient with
// bounded timeouts, for the demo and bridgectl:
//
//	redis://[user:pass@]host:port/db           one server (rediss:// for TLS)
//	redis+cluster://host:port?addr=host2:port2 Redis Cluster (seed nodes)
//	redis+sentinel://host:port?master_name=m&addr=host2:port2
//	                                           Sentinel (the sentinels' addresses)
//
// Query parameters are go-redis's (dial_timeout, read_timeout, ...). Errors
// never contain the URL: it may hold a password.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds dialing, reading and writing unless the URL says
// otherwise.
const DefaultTimeout = 500 * time.Millisecond

// Kind is the topology a URL names.
type Kind string

// Kinds of URL.
const (
	Single   Kind = "single"
	Cluster  Kind = "cluster"
	Sentinel Kind = "sentinel"
)

// New returns a client for rawURL and the topology it names.
func New(rawURL string) (redis.UniversalClient, Kind, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, "", errors.New("redis URL: want redis://, rediss://, redis+cluster:// or redis+sentinel://")
	}
	base, topo, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, "", fmt.Errorf("redis URL: unknown scheme %q", scheme)
	}
	plain := base + "://" + rest
	q := query(rest)
	switch topo {
	case "":
		opt, err := redis.ParseURL(plain)
		if err != nil {
			return nil, "", clean(err)
		}
		bound(q, &opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewClient(opt), Single, nil
	case "cluster":
		opt, err := redis.ParseClusterURL(plain)
		if err != nil {
			return nil, "", clean(err)
		}
		bound(q, &opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewClusterClient(opt), Cluster, nil
	case "sentinel":
		opt, err := redis.ParseFailoverURL(plain)
		if err != nil {
			return nil, "", clean(err)
		}
		if opt.MasterName == "" {
			return nil, "", errors.New("redis URL: redis+sentinel:// needs master_name=")
		}
		bound(q, &opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewFailoverClient(opt), Sentinel, nil
	}
	return nil, "", fmt.Errorf("redis URL: unknown topology %q (want cluster or sentinel)", topo)
}

// bound turns context deadlines on and sets the dial, read and write
// timeouts to DefaultTimeout unless the URL set them.
func bound(q url.Values, ctxTimeouts *bool, dial, read, write *time.Duration) {
	*ctxTimeouts = true
	for name, d := range map[string]*time.Duration{"dial_timeout": dial, "read_timeout": read, "write_timeout": write} {
		if !q.Has(name) {
			*d = DefaultTimeout
		}
	}
}

func query(rest string) url.Values {
	_, raw, _ := strings.Cut(rest, "?")
	q, _ := url.ParseQuery(raw)
	return q
}

// clean drops the URL from parse errors.
func clean(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("redis URL: %w", err)
}
