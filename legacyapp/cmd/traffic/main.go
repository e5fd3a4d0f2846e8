// Command traffic simulates users of the running demo monolith: browser
// users who log in and browse pages and the API with their cookie jar, API
// clients with bearer tokens, anonymous visitors and forged credentials, at
// a given rate and mix, for a bounded time. It talks to loopback only
// unless told otherwise.
//
//	traffic -url http://127.0.0.1:8080 -duration 60s -rate 20 -mix browser=6,api=2,anonymous=1,forged=1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessionbridge/sessionbridge/legacyapp/traffic"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "traffic:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("traffic", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "base `URL` of the demo")
	duration := fs.Duration("duration", time.Minute, "how long to run (at most 1h)")
	rate := fs.Float64("rate", 20, "requests per second in total (0: as fast as possible)")
	workers := fs.Int("workers", 8, "concurrent simulated users")
	mix := fs.String("mix", "browser=6,api=2,anonymous=1,forged=1", "weights of the kinds of users")
	remote := fs.Bool("allow-remote", false, "allow a non-loopback URL (only against a server you own)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*base)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port", *base)
	}
	if !*remote && !isLoopback(u.Hostname()) {
		return fmt.Errorf("-url %q is not on loopback; pass -allow-remote for a server you own", *base)
	}
	if *duration <= 0 || *duration > time.Hour {
		return errors.New("-duration: want a duration up to 1h")
	}
	m, err := parseMix(*mix)
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, strings.TrimRight(*base, "/")+"/healthz", 15*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simulating %d users against %s for %v (%s)\n", *workers, *base, *duration, *mix)
	tally, err := traffic.Run(ctx, traffic.Config{
		BaseURL: strings.TrimRight(*base, "/"), Workers: *workers, Rate: *rate, Duration: *duration, Mix: m,
		Seed: uint64(time.Now().UnixNano()),
	})
	if err != nil {
		return err
	}
	summarize(stdout, tally)
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseMix parses "browser=6,api=2,anonymous=1,forged=1".
func parseMix(s string) (traffic.Mix, error) {
	var m traffic.Mix
	names := map[string]traffic.Kind{"browser": traffic.Browser, "api": traffic.APIClient, "anonymous": traffic.Anonymous, "forged": traffic.Forger}
	for _, item := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(item), "=")
		k, known := names[name]
		n, err := strconv.Atoi(w)
		if !ok || !known || err != nil || n < 0 {
			return m, fmt.Errorf("-mix item %q: want browser|api|anonymous|forged=WEIGHT", item)
		}
		m[k] = n
	}
	if m == (traffic.Mix{}) {
		return m, errors.New("-mix: every weight is zero")
	}
	return m, nil
}

func summarize(w io.Writer, t *traffic.Tally) {
	fmt.Fprintf(w, "%d requests, %d transport errors, %d server errors, %d logged-out surprises\n",
		t.Total(), t.Errors, t.ServerErrors(), t.LoggedOut)
	routes := make([]string, 0, len(t.Routes))
	for r := range t.Routes {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		fmt.Fprintf(w, "  %-20s %d\n", r, t.Routes[r])
	}
}

// waitHealthy polls the demo's /healthz until it answers 200.
func waitHealthy(ctx context.Context, u string, d time.Duration) error {
	deadline := time.Now().Add(d)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not answer 200 within %v", u, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
