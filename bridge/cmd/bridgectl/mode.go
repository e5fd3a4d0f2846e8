package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/bridge/fleet"
)

const modeUsageText = `Usage:
  bridgectl mode list  --app NAME|--prefix P [--redis URL]
  bridgectl mode set   ROUTE MODE --app NAME|--prefix P [--redis URL]
  bridgectl mode reset ROUTE --app NAME|--prefix P [--redis URL]

list   prints each route's run-time override and the mode the instances
       published at their last flush (EFFECTIVE).
set    overrides the mode of ROUTE (a mux path template such as
       /api/orders/{id}) on every instance, within its mode refresh
       interval (2s by default). MODE is legacy, dual or jwt.
reset  drops the override: the instances return to their configured mode.
       It is the rollback of a "mode set".

Flags:
  --app NAME    the app whose fleet it is: its bridges' Audience, as in fleet.Config.App
  --prefix P    key prefix of the fleet, as in fleet.Config.Prefix (default "sessionbridge:NAME")
  --redis URL   Redis of the fleet (default $REDIS_URL)
`

func runMode(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "bridgectl mode: missing subcommand (list, set or reset)\n\n%s", modeUsageText)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, modeUsageText)
		return exitOK
	case "list", "set", "reset":
	default:
		fmt.Fprintf(stderr, "bridgectl mode: unknown subcommand %q\n\n%s", sub, modeUsageText)
		return exitUsage
	}

	name := "mode " + sub
	var c conn
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.register(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), modeUsageText) }
	usage := func() { fmt.Fprint(stderr, modeUsageText) }

	pos, err := parseArgs(fs, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err == nil {
		err = checkModeArgs(sub, pos)
	}
	if err != nil {
		return fail(stderr, name, err, usage)
	}
	f, rdb, err := c.fleet(ctx, getenv, fleet.Config{})
	if err != nil {
		return fail(stderr, name, err, usage)
	}
	defer rdb.Close()

	switch sub {
	case "list":
		err = modeList(ctx, f, stdout)
	case "set":
		m, _ := bridge.ParseMode(pos[1]) // checked by checkModeArgs
		err = modeSet(ctx, f, pos[0], m, c.flags(), stdout, stderr)
	case "reset":
		err = modeReset(ctx, f, pos[0], stdout)
	}
	if err != nil {
		return fail(stderr, name, redact(err, c.url), usage)
	}
	return exitOK
}

// checkModeArgs checks the positional arguments of a mode subcommand.
func checkModeArgs(sub string, pos []string) error {
	switch {
	case sub == "list" && len(pos) > 0:
		return usagef("unexpected argument %q", pos[0])
	case sub == "reset" && len(pos) != 1:
		return usagef("want ROUTE, got %d argument(s)", len(pos))
	case sub == "set" && len(pos) != 2:
		return usagef("want ROUTE MODE, got %d argument(s)", len(pos))
	case sub == "set":
		route := pos[0]
		if !strings.HasPrefix(route, "/") && route != bridge.RouteUnmatched {
			return usagef("route %q: want a mux path template such as /api/me", route)
		}
		if _, err := bridge.ParseMode(pos[1]); err != nil {
			return usagef("mode %q: want legacy, dual or jwt", pos[1])
		}
	}
	return nil
}

// modeList prints every route that has an override or a published mode.
func modeList(ctx context.Context, f *fleet.Fleet, w io.Writer) error {
	overrides, err := f.Modes(ctx)
	if err != nil {
		return err
	}
	effective, err := f.EffectiveModes(ctx)
	if err != nil {
		return err
	}
	var routes []string
	for r := range effective {
		routes = append(routes, r)
	}
	for r := range overrides {
		if _, ok := effective[r]; !ok {
			routes = append(routes, r)
		}
	}
	if len(routes) == 0 {
		_, err := fmt.Fprintln(w, "no routes: no override is set and no instance has published its modes yet")
		return err
	}
	sort.Strings(routes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tOVERRIDE\tEFFECTIVE")
	for _, r := range routes {
		o, e := "-", "-"
		if m, ok := overrides[r]; ok {
			o = m.String()
		}
		if s, ok := effective[r]; ok && s != "" {
			e = s
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r, o, e)
	}
	return tw.Flush()
}

// modeSet sets the override and says how to roll it back: reset when
// there was none, set to the previous override otherwise; flags name the
// fleet in the rollback's command line.
func modeSet(ctx context.Context, f *fleet.Fleet, route string, m bridge.Mode, flags string, stdout, stderr io.Writer) error {
	overrides, err := f.Modes(ctx)
	if err != nil {
		return err
	}
	effective, err := f.EffectiveModes(ctx)
	if err != nil {
		return err
	}
	if err := f.SetMode(ctx, route, m); err != nil {
		return err
	}
	if _, known := effective[route]; !known && len(effective) > 0 {
		fmt.Fprintf(stderr, "bridgectl mode set: warning: no instance has published route %q; check that it is the mux path template (bridgectl mode list)\n", route)
	}
	was := "no override"
	rollback := "bridgectl mode reset " + route
	if prev, ok := overrides[route]; ok {
		was = "override " + prev.String()
		rollback = "bridgectl mode set " + route + " " + prev.String()
	} else if e := effective[route]; e != "" {
		was = e
	}
	rollback += flags
	_, err = fmt.Fprintf(stdout, "%s: %s (was %s); instances apply it within their mode refresh interval (2s by default)\nroll back with: %s\n",
		route, m, was, rollback)
	return err
}

// modeReset drops the override of route.
func modeReset(ctx context.Context, f *fleet.Fleet, route string, w io.Writer) error {
	overrides, err := f.Modes(ctx)
	if err != nil {
		return err
	}
	prev, had := overrides[route]
	if err := f.ResetMode(ctx, route); err != nil {
		return err
	}
	if !had {
		_, err = fmt.Fprintf(w, "%s: no override was set; instances run their configured mode\n", route)
		return err
	}
	_, err = fmt.Fprintf(w, "%s: override %s removed; instances return to their configured mode within their mode refresh interval (2s by default)\n", route, prev)
	return err
}
