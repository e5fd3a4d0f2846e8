// Package redistest starts real redis-server processes for tests.
//
// Each call to New starts a fresh redis-server on a free loopback port and
// stops it when the test ends, so tests are isolated and fault tests can
// pause, kill or restart their own server. When REDIS_URL is set, New uses
// that server instead (and flushes its database first: point it at a
// throwaway server only); fault injection is then unavailable.
//
// A missing redis-server binary fails the test with the command that
// installs it; it never skips.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"io"
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

// InstallHint says how to get redis-server on a Debian machine.
const InstallHint = "redis-server is required for this test: run `apt-get install redis-server` (or `make test`, which installs it as root), or set REDIS_URL to a throwaway server"

// Server is one redis-server process started for a test.
type Server struct {
	tb   testing.TB
	Addr string // host:port on loopback
	dir  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	external bool
}

// New starts a redis-server for tb, or uses REDIS_URL, and stops it when
// tb ends.
func New(tb testing.TB) *Server {
	tb.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			tb.Fatalf("redistest: REDIS_URL: %v", err)
		}
		s := &Server{tb: tb, Addr: opt.Addr, external: true}
		c := redis.NewClient(opt)
		defer c.Close()
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			tb.Fatalf("redistest: flush REDIS_URL database: %v", err)
		}
		return s
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("redistest: " + InstallHint)
	}
	s := &Server{tb: tb, dir: tb.TempDir()}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
	s.start()
	tb.Cleanup(s.stop)
	return s
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Args returns the redis-server command line for a server on addr with its
// files in dir; extra arguments are appended (e.g. "--cluster-enabled", "yes").
func Args(addr, dir string, extra ...string) []string {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{
		"--bind", host, "--port", port,
		"--dir", dir,
		"--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "yes",
		"--loglevel", "warning", "--logfile", filepath.Join(dir, "redis-"+port+".log"),
	}
	return append(args, extra...)
}

func (s *Server) start() {
	s.tb.Helper()
	cmd := exec.Command("redis-server", Args(s.Addr, s.dir)...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("redistest: start redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	if err := WaitReady(s.Addr, 5*time.Second); err != nil {
		s.tb.Fatalf("redistest: redis-server on %s: %v (log: %s)", s.Addr, err, s.log())
	}
}

// WaitReady polls addr with PING until it answers PONG or d passes.
func WaitReady(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
			_, err = conn.Write([]byte("PING\r\n"))
			if err == nil {
				var line string
				line, err = bufio.NewReader(conn).ReadString('\n')
				if err == nil && strings.HasPrefix(line, "+PONG") {
					conn.Close()
					return nil
				}
				if err == nil {
					err = fmt.Errorf("unexpected reply %q", line)
				}
			}
			conn.Close()
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", d, last)
}

func (s *Server) log() string {
	if s.dir == "" {
		return ""
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis-"+port+".log"))
	return strings.TrimSpace(string(b))
}

func (s *Server) stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot die
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Options returns go-redis options for the server with short, bounded
// timeouts suitable for tests.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:                  s.Addr,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	}
}

// Client returns a new client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(s.Options())
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) own(op string) *exec.Cmd {
	s.tb.Helper()
	if s.external {
		s.tb.Fatalf("redistest: %s needs a server started by the harness; unset REDIS_URL", op)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.tb.Fatalf("redistest: %s: server is not running", op)
	}
	return s.cmd
}

// Pause stops the server process (SIGSTOP): connections are accepted by the
// kernel but never answered, as with a hung server.
func (s *Server) Pause() { _ = s.own("Pause").Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { _ = s.own("Resume").Process.Signal(syscall.SIGCONT) }

// Kill stops the server for good (until Restart).
func (s *Server) Kill() {
	s.own("Kill")
	s.stop()
}

// Restart starts the server again on the same address, empty.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.stop()
	}
	s.start()
}

// CommandCalls returns how many times Redis executed cmd (lowercase, e.g.
// "get") since start or the last CONFIG RESETSTAT, from INFO commandstats.
func (s *Server) CommandCalls(cmd string) int64 {
	s.tb.Helper()
	return s.CommandCallsOf(cmd)[0]
}

// CommandCallsOf is CommandCalls of each of cmds, read from one INFO, so
// that their differences are consistent (a command running between two
// reads would otherwise count in one and not the other).
func (s *Server) CommandCallsOf(cmds ...string) []int64 {
	s.tb.Helper()
	c := redis.NewClient(s.Options())
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		s.tb.Fatalf("redistest: INFO commandstats: %v", err)
	}
	out := make([]int64, len(cmds))
	for i, cmd := range cmds {
		prefix := "cmdstat_" + strings.ToLower(cmd) + ":calls="
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
				out[i], _ = strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			}
		}
	}
	return out
}

// Blackhole starts a TCP listener on loopback that accepts connections and
// never replies, like a Redis that hangs; it returns its address.
func Blackhole(tb testing.TB) string {
	tb.Helper()
	return listen(tb, "blackhole", func(c net.Conn) []net.Conn { return []net.Conn{c} })
}

// Forward starts a TCP listener on loopback that forwards every connection
// to addr: another address for the same server (a cluster of many masters
// made of one redis-server, say). It returns its own address.
func Forward(tb testing.TB, addr string) string {
	tb.Helper()
	return listen(tb, "forward", func(in net.Conn) []net.Conn {
		out, err := net.Dial("tcp", addr)
		if err != nil {
			in.Close()
			return nil
		}
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
		return []net.Conn{in, out}
	})
}

// listen starts a loopback listener that hands each accepted connection
// to handle; the connections handle returns are closed with the listener
// when the test ends. It returns the listener's address.
func listen(tb testing.TB, what string, handle func(net.Conn) []net.Conn) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: %s: %v", what, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			open := handle(c)
			mu.Lock()
			conns = append(conns, open...)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}
