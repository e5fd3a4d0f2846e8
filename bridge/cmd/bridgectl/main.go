// Command bridgectl reads and steers the fleet-wide state of the bridges
// that share a Redis: the migration report, and the run-time mode of each
// route.
//
//	bridgectl report     --app NAME|--prefix P [--redis URL] [--since 24h|RFC3339] [--json]
//	bridgectl mode list  --app NAME|--prefix P [--redis URL]
//	bridgectl mode set   ROUTE MODE --app NAME|--prefix P [--redis URL]
//	bridgectl mode reset ROUTE --app NAME|--prefix P [--redis URL]
//
// --app names the fleet: its bridges' audience (or fleet.Config.App).
// --redis defaults to $REDIS_URL. Exit status: 0 done, 1 runtime error
// (such as Redis not answering), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/sessionbridge/sessionbridge/bridge/fleet"
	"github.com/sessionbridge/sessionbridge/internal/redisurl"
)

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

const usageText = `bridgectl reads and steers the bridges of a fleet through their shared Redis.

Usage:
  bridgectl report     --app NAME|--prefix P [--redis URL] [--since 24h|RFC3339] [--json]
  bridgectl mode list  --app NAME|--prefix P [--redis URL]
  bridgectl mode set   ROUTE MODE --app NAME|--prefix P [--redis URL]
  bridgectl mode reset ROUTE --app NAME|--prefix P [--redis URL]
  bridgectl sessions count [--redis URL] [--prefix session_]
  bridgectl help [COMMAND]

NAME is the app whose fleet to read: its bridges' bridge.Config.Audience
(or the fleet.Config.App it was given); --prefix P names the fleet by its
fleet.Config.Prefix instead, when one was set.

ROUTE is a gorilla/mux path template such as /api/orders/{id}; MODE is
legacy, dual or jwt. A mode set with "mode set" overrides the configured one
on every instance within its mode refresh interval (2s by default); "mode
reset" rolls it back.

--redis defaults to $REDIS_URL (redis://[:password@]host:port[/db] or
rediss://...).

Exit status: 0 done, 1 runtime error (e.g. Redis unreachable), 2 usage error.
`

func main() {
	// go-redis logs dial failures itself; run reports them, once.
	redis.SetLogger(discardLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// discardLogger silences go-redis's own logging.
type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// run is bridgectl with its arguments (without the program name), output
// streams and environment; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		return help(rest, stdout, stderr)
	case "report":
		return runReport(ctx, rest, stdout, stderr, getenv)
	case "mode":
		return runMode(ctx, rest, stdout, stderr, getenv)
	case "sessions":
		return runSessions(ctx, rest, stdout, stderr, getenv)
	default:
		fmt.Fprintf(stderr, "bridgectl: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
}

// help prints the usage of bridgectl or of one command to stdout.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	switch args[0] {
	case "report":
		fs := reportFlags(new(reportOptions))
		fs.SetOutput(stdout)
		fs.Usage()
	case "mode":
		fmt.Fprint(stdout, modeUsageText)
	case "sessions":
		fmt.Fprint(stdout, sessionsUsageText)
	default:
		fmt.Fprintf(stderr, "bridgectl: unknown command %q\n\n%s", args[0], usageText)
		return exitUsage
	}
	return exitOK
}

// usageError is a wrong command line: exit status 2, with the usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// conn is what every command needs: where Redis is and, for the commands
// that read a fleet's keys, whose fleet (--app, --prefix).
type conn struct {
	url    string
	app    string
	prefix string
	named  bool // the command reads a fleet's keys: --app or --prefix is required
}

// register adds --redis, --app and --prefix to fs. The default of --redis
// is applied by fleet, not here: the usage would print it, password
// included.
func (c *conn) register(fs *flag.FlagSet) {
	c.named = true
	fs.StringVar(&c.url, "redis", "", "Redis `URL` of the fleet (default $REDIS_URL)")
	fs.StringVar(&c.app, "app", "", "the `app` whose fleet to read: its bridges' Audience, as in fleet.Config.App")
	fs.StringVar(&c.prefix, "prefix", "", "key `prefix` of the fleet, as in fleet.Config.Prefix (default sessionbridge:APP)")
}

// flags are the --app and --prefix of c, as a command line would repeat
// them.
func (c *conn) flags() string {
	var s string
	if c.app != "" {
		s += " --app " + c.app
	}
	if c.prefix != "" {
		s += " --prefix " + c.prefix
	}
	return s
}

// fleet connects to Redis (--redis, else $REDIS_URL), checks that it
// answers and returns a Fleet on it that no Bridge uses, with cfg's other
// settings. The caller closes the returned client.
func (c *conn) fleet(ctx context.Context, getenv func(string) string, cfg fleet.Config) (*fleet.Fleet, redis.UniversalClient, error) {
	from := "--redis"
	if c.url == "" {
		c.url, from = getenv("REDIS_URL"), "REDIS_URL"
	}
	if c.url == "" {
		return nil, nil, usagef("no Redis: pass --redis URL or set REDIS_URL")
	}
	if strings.ContainsAny(c.prefix, "{}") {
		return nil, nil, usagef("--prefix %q: must not contain braces (the prefix becomes the keys' hash tag)", c.prefix)
	}
	rdb, addr, err := newRedisClient(c.url)
	if err != nil {
		return nil, nil, usagef("%s: %v", from, redact(err, c.url))
	}
	if c.named && c.app == "" && c.prefix == "" {
		_ = rdb.Close()
		return nil, nil, usagef("name the fleet: --app NAME (its bridges' Audience, or fleet.Config.App) or --prefix P (fleet.Config.Prefix; %q for the keys of releases before per-app keys)", fleet.DefaultPrefix)
	}
	cfg.Redis, cfg.App, cfg.Prefix = rdb, c.app, c.prefix
	f, err := fleet.New(cfg)
	if err != nil {
		_ = rdb.Close()
		return nil, nil, usagef("%v", err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, nil, fmt.Errorf("cannot reach Redis at %s: %w", addr, redact(err, c.url))
	}
	return f, rdb, nil
}

// newRedisClient builds the client for rawURL and returns it with the
// address it names (never the password), for messages. It is the one
// place that knows URL forms: cluster and sentinel forms belong here.
func newRedisClient(rawURL string) (redis.UniversalClient, string, error) {
	rdb, _, err := redisurl.New(rawURL)
	if err != nil {
		// A parse error may quote the bad part: when it is in the user
		// information, say so without quoting it.
		if i, j, ok := userinfo(rawURL); ok {
			masked := rawURL[:i] + "user:password" + rawURL[j:]
			if c, _, err := redisurl.New(masked); err == nil {
				c.Close()
				return nil, "", errors.New("the user or password in the URL is not valid: percent-encode its special characters")
			}
		}
		return nil, "", err
	}
	return rdb, describe(rdb), nil
}

// describe names the server(s) of a client for messages, without secrets.
func describe(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return "redis"
}

// userinfo locates the user information of rawURL: rawURL[i:j] is what
// stands between "://" and the last "@" before the query.
func userinfo(rawURL string) (i, j int, ok bool) {
	k := strings.Index(rawURL, "://")
	if k < 0 {
		return 0, 0, false
	}
	i = k + len("://")
	authority := rawURL[i:]
	if q := strings.IndexAny(authority, "?#"); q >= 0 {
		authority = authority[:q]
	}
	at := strings.LastIndex(authority, "@")
	if at <= 0 {
		return 0, 0, false
	}
	return i, i + at, true
}

// redact returns err with the user information of rawURL (the password)
// masked wherever its text appears: errors never show credentials.
func redact(err error, rawURL string) error {
	i, j, ok := userinfo(rawURL)
	if err == nil || !ok {
		return err
	}
	info := rawURL[i:j]
	secrets := []string{info}
	if _, pass, ok := strings.Cut(info, ":"); ok && pass != "" {
		secrets = append(secrets, pass)
		if p, err := url.PathUnescape(pass); err == nil && p != pass {
			secrets = append(secrets, p)
		}
	}
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// fail prints err for a command and returns its exit status: 2 and the
// command's usage for a usage error, 1 otherwise.
func fail(stderr io.Writer, cmd string, err error, usage func()) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "bridgectl %s: %v\n\n", cmd, err)
		usage()
		return exitUsage
	}
	fmt.Fprintf(stderr, "bridgectl %s: %v\n", cmd, err)
	return exitRuntime
}

// parseArgs parses flags wherever they stand among the positional
// arguments (bridgectl mode set /api/me jwt --redis URL) and returns the
// positional ones; everything after "--" is positional. -h prints the
// usage to stdout and returns flag.ErrHelp; any other error is a
// *usageError.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var errBuf strings.Builder
	fs.SetOutput(&errBuf) // the flag package's own message is in err
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fs.Usage()
				return nil, err
			}
			return nil, &usageError{msg: err.Error()}
		}
		consumed := len(args) - fs.NArg()
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, fs.Args()...), nil
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
