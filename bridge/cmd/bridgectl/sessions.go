package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sessionbridge/sessionbridge/bridge/fleet"
)

const sessionsUsageText = `Usage:
  bridgectl sessions count [--redis URL] [--prefix session_]

count  prints how many legacy sessions remain in Redis: the keys starting
       with --prefix ("session_" for boj/redistore and bridge/redisstore,
       "session:" for rbcervilla/redisstore). It uses SCAN, never KEYS, so
       it does not block Redis; on a cluster it scans every master.

Flags:
  --redis URL   Redis holding the sessions (default $REDIS_URL)
  --prefix P    key prefix of the legacy sessions (default "session_")
`

func runSessions(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	usage := func() { fmt.Fprint(stderr, sessionsUsageText) }
	if len(args) == 0 {
		fmt.Fprintf(stderr, "bridgectl sessions: missing subcommand (count)\n\n%s", sessionsUsageText)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, sessionsUsageText)
		return exitOK
	case "count":
	default:
		fmt.Fprintf(stderr, "bridgectl sessions: unknown subcommand %q\n\n%s", args[0], sessionsUsageText)
		return exitUsage
	}
	var c conn
	fs := flag.NewFlagSet("sessions count", flag.ContinueOnError)
	fs.StringVar(&c.url, "redis", "", "Redis `URL` holding the sessions (default $REDIS_URL)")
	var prefix string
	fs.StringVar(&prefix, "prefix", "session_", "key `prefix` of the legacy sessions")
	fs.Usage = func() { fmt.Fprint(fs.Output(), sessionsUsageText) }
	pos, err := parseArgs(fs, args[1:], stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err == nil && len(pos) > 0 {
		err = usagef("unexpected argument %q", pos[0])
	}
	if err == nil && prefix == "" {
		err = usagef("--prefix must not be empty: it would count every key")
	}
	if err != nil {
		return fail(stderr, "sessions count", err, usage)
	}
	f, rdb, err := c.fleet(ctx, getenv, fleet.Config{})
	if err != nil {
		return fail(stderr, "sessions count", err, usage)
	}
	defer rdb.Close()
	n, err := f.CountSessions(ctx, prefix)
	if err != nil {
		return fail(stderr, "sessions count", redact(err, c.url), usage)
	}
	fmt.Fprintf(stdout, "%d legacy sessions with key prefix %q\n", n, prefix)
	return exitOK
}
