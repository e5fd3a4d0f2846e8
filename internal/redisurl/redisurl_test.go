package redisurl

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestNew(t *testing.T) {
	tests := []struct {
		url  string
		kind Kind
		addr []string
	}{
		{"redis://127.0.0.1:6379/2", Single, []string{"127.0.0.1:6379"}},
		{"rediss://u:secret@cache.example:6380/0", Single, []string{"cache.example:6380"}},
		{"redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", Cluster, []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}},
		{"redis+sentinel://127.0.0.1:26379?master_name=mymaster&addr=127.0.0.1:26380", Sentinel, nil},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, kind, err := New(tt.url)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			if kind != tt.kind {
				t.Errorf("kind: got %v, want %v", kind, tt.kind)
			}
			switch c := c.(type) {
			case *redis.Client:
				o := c.Options()
				if !o.ContextTimeoutEnabled || o.ReadTimeout != DefaultTimeout {
					t.Errorf("options: ContextTimeoutEnabled=%v ReadTimeout=%v, want true and %v", o.ContextTimeoutEnabled, o.ReadTimeout, DefaultTimeout)
				}
				if tt.addr != nil && o.Addr != tt.addr[0] {
					t.Errorf("addr: got %v, want %v", o.Addr, tt.addr[0])
				}
			case *redis.ClusterClient:
				o := c.Options()
				if strings.Join(o.Addrs, ",") != strings.Join(tt.addr, ",") || !o.ContextTimeoutEnabled {
					t.Errorf("cluster: got %v (ctx timeouts %v), want %v", o.Addrs, o.ContextTimeoutEnabled, tt.addr)
				}
			default:
				t.Fatalf("client type %T", c)
			}
		})
	}
}

func TestNewTimeoutFromURL(t *testing.T) {
	c, _, err := New("redis://127.0.0.1:6379/0?read_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.(*redis.Client).Options().ReadTimeout; got != 2*time.Second {
		t.Errorf("read timeout: got %v, want 2s", got)
	}
}

func TestNewErrors(t *testing.T) {
	for _, u := range []string{
		"127.0.0.1:6379",
		"http://127.0.0.1",
		"redis+mesh://127.0.0.1:6379",
		"redis+sentinel://127.0.0.1:26379",
		"redis://:s3cret-pass@127.0.0.1:6379/notanumber",
	} {
		t.Run(u, func(t *testing.T) {
			_, _, err := New(u)
			if err == nil {
				t.Fatalf("got no error")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}
