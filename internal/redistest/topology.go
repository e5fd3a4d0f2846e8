package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one redis process started for a topology.
type proc struct {
	Addr string
	cmd  *exec.Cmd
}

func startProc(tb testing.TB, bin string, args ...string) *exec.Cmd {
	tb.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		tb.Fatalf("redistest: %s is required: run `apt-get install redis-server redis-sentinel` (or `make test` as root)", bin)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("redistest: start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// Cluster is a Redis Cluster of masters without replicas on loopback.
type Cluster struct {
	Addrs []string
	procs []*proc
}

// NewCluster starts a Redis Cluster of n masters (at least 3) and waits
// until it serves every slot.
func NewCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatal("redistest: redis-cli is required: run `apt-get install redis-tools`")
	}
	dir := tb.TempDir()
	c := &Cluster{}
	for i := 0; i < n; i++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
		_, port, _ := net.SplitHostPort(addr)
		cmd := startProc(tb, "redis-server", Args(addr, dir,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+port+".conf"),
			"--cluster-node-timeout", "2000")...)
		if err := WaitReady(addr, 5*time.Second); err != nil {
			tb.Fatalf("redistest: cluster node %s: %v", addr, err)
		}
		c.Addrs = append(c.Addrs, addr)
		c.procs = append(c.procs, &proc{Addr: addr, cmd: cmd})
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c.ok() {
			return c
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: cluster not ready after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) ok() bool {
	for _, a := range c.Addrs {
		cl := redis.NewClient(&redis.Options{Addr: a})
		info, err := cl.ClusterInfo(context.Background()).Result()
		cl.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
	}
	return true
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.Addrs, ContextTimeoutEnabled: true,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// URL is the redis+cluster:// URL of the cluster (internal/redisurl).
func (c *Cluster) URL() string {
	u := "redis+cluster://" + c.Addrs[0]
	for i, a := range c.Addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Sentinel is a master, a replica and three sentinels on loopback.
type Sentinel struct {
	MasterName string
	Master     string // the address of the first master
	Replica    string
	Sentinels  []string
	master     *exec.Cmd
	replica    *exec.Cmd
}

// NewSentinel starts a master, a replica of it and three sentinels that
// fail over after one second of silence, and waits until the sentinels
// know the replica.
func NewSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	dir := tb.TempDir()
	s := &Sentinel{MasterName: "sbmaster"}
	s.Master = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
	// No diskless-sync delay: the replica has the data at once.
	s.master = startProc(tb, "redis-server", Args(s.Master, dir, "--repl-diskless-sync-delay", "0")...)
	if err := WaitReady(s.Master, 5*time.Second); err != nil {
		tb.Fatalf("redistest: sentinel master: %v", err)
	}
	s.Replica = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
	mhost, mport, _ := net.SplitHostPort(s.Master)
	s.replica = startProc(tb, "redis-server", Args(s.Replica, dir, "--replicaof", mhost, mport)...)
	if err := WaitReady(s.Replica, 5*time.Second); err != nil {
		tb.Fatalf("redistest: sentinel replica: %v", err)
	}
	for i := 0; i < 3; i++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
		_, port, _ := net.SplitHostPort(addr)
		conf := filepath.Join(dir, "sentinel-"+port+".conf")
		body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, s.MasterName, mhost, mport, s.MasterName, s.MasterName, s.MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
		startProc(tb, "redis-sentinel", conf)
		if err := WaitReady(addr, 5*time.Second); err != nil {
			tb.Fatalf("redistest: sentinel %s: %v", addr, err)
		}
		s.Sentinels = append(s.Sentinels, addr)
	}
	// Wait until the sentinels see the replica, so a failover can happen.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
		replicas, err := sc.Replicas(context.Background(), s.MasterName).Result()
		sc.Close()
		if err == nil && len(replicas) > 0 {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("redistest: sentinels did not discover the replica in 20s")
	return nil
}

// Client returns a failover client, closed when the test ends.
func (s *Sentinel) Client(tb testing.TB) *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: s.MasterName, SentinelAddrs: s.Sentinels, ContextTimeoutEnabled: true,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// URL is the redis+sentinel:// URL (internal/redisurl).
func (s *Sentinel) URL() string {
	u := "redis+sentinel://" + s.Sentinels[0] + "?master_name=" + s.MasterName
	for _, a := range s.Sentinels[1:] {
		u += "&addr=" + a
	}
	return u
}

// KillMaster kills the first master process, so the sentinels promote the
// replica.
func (s *Sentinel) KillMaster() {
	_ = s.master.Process.Kill()
	_ = s.master.Wait()
}

// CurrentMaster asks a sentinel for the master's address.
func (s *Sentinel) CurrentMaster(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer sc.Close()
	a, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// Topology is a replicated Redis topology a test runs its checks on.
type Topology struct {
	Name    string
	Cluster bool // Redis Cluster: several masters, keys by slot
	// Start starts the topology for t (stopped when t ends) and returns
	// a constructor of clients configured as an application does.
	Start func(t *testing.T) func(testing.TB) redis.UniversalClient
}

// Topologies are a Redis Cluster of three masters and Sentinel (master,
// replica, three sentinels).
var Topologies = []Topology{
	{"cluster", true, func(t *testing.T) func(testing.TB) redis.UniversalClient {
		c := NewCluster(t, 3)
		return func(tb testing.TB) redis.UniversalClient { return c.Client(tb) }
	}},
	{"sentinel", false, func(t *testing.T) func(testing.TB) redis.UniversalClient {
		s := NewSentinel(t)
		return func(tb testing.TB) redis.UniversalClient { return s.Client(tb) }
	}},
}

// RunTopologies runs each topology of Topologies in a parallel subtest of
// t: check gets the started topology's client constructor.
func RunTopologies(t *testing.T, check func(t *testing.T, tp Topology, newClient func(testing.TB) redis.UniversalClient)) {
	for _, tp := range Topologies {
		t.Run(tp.Name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			newClient := tp.Start(t)
			t.Logf("%s ready in %v", tp.Name, time.Since(start).Round(time.Millisecond))
			check(t, tp, newClient)
		})
	}
}

// KeysPerMaster counts the keys matching pattern on each master that has
// any: every master of a cluster client, or the one server of a client.
func KeysPerMaster(tb testing.TB, c redis.UniversalClient, pattern string) map[string]int64 {
	tb.Helper()
	var mu sync.Mutex
	out := map[string]int64{}
	count := func(ctx context.Context, m *redis.Client) error {
		var n int64
		iter := m.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		if n > 0 {
			mu.Lock()
			out[m.Options().Addr] = n
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(context.Background(), count)
	case *redis.Client:
		err = count(context.Background(), c)
	default:
		tb.Fatalf("unexpected client %T", c)
	}
	if err != nil {
		tb.Fatalf("scan %q on the masters: %v", pattern, err)
	}
	return out
}
