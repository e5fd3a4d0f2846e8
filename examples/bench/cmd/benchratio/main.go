// Command benchratio reads raw `go test -bench` output (the bridge's
// in-package benchmarks and the examples/bench peers, from one run) and
// prints the ratios the performance targets are stated in, from the
// medians of the repeated runs, each marked PASS or MISS.
//
// Usage: go run ./cmd/benchratio raw-bridge.txt raw-peers.txt
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// samples are the values of one benchmark per unit (ns/op, allocs/op).
type samples map[string][]float64

var procSuffix = regexp.MustCompile(`-\d+$`)

func read(paths []string) (map[string]samples, error) {
	out := map[string]samples{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
				continue
			}
			name := procSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), "")
			s := out[name]
			if s == nil {
				s = samples{}
				out[name] = s
			}
			for i := 2; i+1 < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					continue
				}
				s[fields[i+1]] = append(s[fields[i+1]], v)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type results map[string]samples

func (r results) get(name, unit string) float64 {
	s, ok := r[name]
	if !ok {
		return math.NaN()
	}
	return median(s[unit])
}

func (r results) ns(name string) float64     { return r.get(name, "ns/op") }
func (r results) allocs(name string) float64 { return r.get(name, "allocs/op") }

var missed int

// info prints a figure that is not a target: a floor, or a comparison
// stricter than the target.
func info(what string, value float64, unit, detail string) {
	fmt.Printf("  info  %-58s %10s             %s\n", what, format(value, unit), detail)
}

// check prints one line: what, the measured value, the target and whether
// it is met (le: the value must be at most target; else at least).
func check(what string, value float64, le bool, target float64, unit, detail string) {
	verdict := "PASS"
	op := ">="
	if le {
		op = "<="
	}
	switch {
	case math.IsNaN(value):
		verdict = "n/a "
	case le && value > target, !le && value < target:
		verdict = "MISS"
		missed++
	}
	fmt.Printf("  %s  %-58s %10s %s %-8s %s\n", verdict, what, format(value, unit), op, format(target, unit), detail)
}

func format(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case unit == "x":
		return fmt.Sprintf("%.2f×", v)
	case unit == "ns":
		return fmt.Sprintf("%.0f ns", v)
	default:
		return fmt.Sprintf("%.0f %s", v, unit)
	}
}

// cell renders a benchmark's median time and allocations.
func cell(r results, name string) string {
	ns := r.ns(name)
	if math.IsNaN(ns) {
		return "—"
	}
	var t string
	switch {
	case ns >= 1e6:
		t = fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e4:
		t = fmt.Sprintf("%.1f µs", ns/1e3)
	case ns >= 1e3:
		t = fmt.Sprintf("%.2f µs", ns/1e3)
	default:
		t = fmt.Sprintf("%.0f ns", ns)
	}
	return fmt.Sprintf("%s · %.0f", t, r.allocs(name))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchratio raw.txt...")
		os.Exit(2)
	}
	all, err := read(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
	r := results(all)
	algs := []string{"ES256", "EdDSA", "RS256", "HS256"}
	jwt := func(alg, transport, impl string) string {
		return "JWT/alg=" + alg + "/transport=" + transport + "/impl=" + impl
	}

	fmt.Println("Targets (medians; \"over bare\" = minus the bare handler on the same mux router, same transport):")
	fmt.Println()
	for _, m := range []struct{ unit, label string }{{"ns/op", "wall"}, {"cpu-ns/op", "cpu"}} {
		t := func(name string) float64 { return r.get(name, m.unit) }
		fmt.Printf("Repeat (cached) token, whole middleware on a mux router [%s: %s]:\n", m.label, m.unit)
		for _, tr := range []string{"bearer", "cookie"} {
			for _, alg := range algs {
				bare, rep := t(jwt(alg, tr, "bare-handler")), t(jwt(alg, tr, "sessionbridge-repeat"))
				check(fmt.Sprintf("%s %s: repeat over bare", alg, tr), rep-bare, true, 1000, "ns",
					fmt.Sprintf("(repeat %.0f, bare %.0f)", rep, bare))
			}
		}
		for _, tr := range []string{"bearer", "cookie"} {
			bare, rep := t(jwt("ES256", tr, "bare-handler")), t(jwt("ES256", tr, "sessionbridge-repeat"))
			parse := t(jwt("ES256", "none", "golang-jwt"))
			check("golang-jwt ES256 parse / (repeat over bare), "+tr, parse/(rep-bare), false, 50, "x",
				fmt.Sprintf("(parse %.0f; / whole repeat %.1f×)", parse, parse/rep))
			hbare, hrep, auth0 := t(jwt("HS256", tr, "bare-handler")), t(jwt("HS256", tr, "sessionbridge-repeat")), t(jwt("HS256", tr, "auth0"))
			check("auth0 HS256 over bare / (repeat over bare), "+tr, (auth0-hbare)/(hrep-hbare), false, 20, "x",
				fmt.Sprintf("(auth0 %.0f; whole/whole %.1f×)", auth0, auth0/hrep))
		}
		fmt.Println()
		fmt.Printf("First sight / golang-jwt ParseWithClaims, same validation [%s]:\n", m.label)
		for _, alg := range algs {
			parse := t(jwt(alg, "none", "golang-jwt"))
			for _, tr := range []string{"bearer", "cookie"} {
				first, bare := t(jwt(alg, tr, "sessionbridge-first")), t(jwt(alg, tr, "bare-handler"))
				check(fmt.Sprintf("%s %s: (first over bare) / golang-jwt", alg, tr), (first-bare)/parse, true, 1.1, "x",
					fmt.Sprintf("(first %.0f, golang-jwt %.0f)", first, parse))
			}
			if m.unit == "ns/op" {
				v := r.ns("Verify/alg=" + alg + "/case=first-sight")
				check(alg+": in-package verify first sight / golang-jwt", v/parse, true, 1.1, "x", fmt.Sprintf("(verify %.0f)", v))
			}
		}
		fmt.Println()
	}
	fmt.Println("Allocations:")
	for _, tr := range []string{"bearer", "cookie"} {
		ab, ar := r.allocs(jwt("ES256", tr, "bare-handler")), r.allocs(jwt("ES256", tr, "sessionbridge-repeat"))
		check("repeat allocs over bare (mux router), ES256 "+tr, ar-ab, true, 2, "allocs", fmt.Sprintf("(repeat %.0f, bare %.0f)", ar, ab))
	}
	fb, fc := r.ns("Floor/op=mux-bare"), r.ns("Floor/op=mux-context-value")
	info("floor: a context-value middleware on mux, over bare (wall)", fc-fb, "ns",
		fmt.Sprintf("(allocs %.0f over bare; the repeat token's extra over it: %.0f ns)",
			r.allocs("Floor/op=mux-context-value")-r.allocs("Floor/op=mux-bare"),
			r.ns(jwt("ES256", "bearer", "sessionbridge-repeat"))-r.ns(jwt("ES256", "bearer", "bare-handler"))-(fc-fb)))
	check("repeat allocs, middleware alone (chain built once)", r.allocs("Middleware/case=repeat-bearer-no-router"), true, 2, "allocs",
		fmt.Sprintf("(%.0f ns)", r.ns("Middleware/case=repeat-bearer-no-router")))
	check("repeat allocs over bare, mux route wrapped once (no r.Use)",
		r.allocs("Middleware/case=repeat-bearer-route-wrapped")-r.allocs("Middleware/case=bare-handler"), true, 2, "allocs",
		fmt.Sprintf("(%.0f ns over bare)", r.ns("Middleware/case=repeat-bearer-route-wrapped")-r.ns("Middleware/case=bare-handler")))
	for _, c := range []string{"bearer", "cookie"} {
		bare, rep := r.ns("Middleware/case=bare-handler"), r.ns("Middleware/case=repeat-"+c)
		check("in-package middleware, repeat "+c+" over bare (wall)", rep-bare, true, 1000, "ns",
			fmt.Sprintf("(allocs %.0f over bare)", r.allocs("Middleware/case=repeat-"+c)-r.allocs("Middleware/case=bare-handler")))
	}

	fmt.Println()
	fmt.Println("Session path / boj-redistore Get:")
	boj := r.ns("Session/path=router/impl=boj-redistore")
	for _, impl := range []string{"sessionbridge-store", "sessionbridge-redis"} {
		v := r.ns("Session/path=router/impl=" + impl)
		check("router: "+impl+" / boj-redistore", v/boj, true, 1.05, "x", fmt.Sprintf("(%.0f vs %.0f)", v, boj))
	}
	for _, base := range []string{"boj-redistore", "boj-redistore-1rtt", "redisstore"} {
		b := r.ns("Session/path=load/impl=" + base)
		for _, impl := range []string{"sessionbridge-store", "sessionbridge-redis"} {
			v := r.ns("Session/path=load/impl=" + impl)
			if base == "boj-redistore" {
				check("load: "+impl+" / "+base, v/b, true, 1.05, "x", fmt.Sprintf("(%.0f vs %.0f)", v, b))
			} else { // stricter than the target: one round trip, as the bridge's sources
				info("load: "+impl+" / "+base, v/b, "x", fmt.Sprintf("(%.0f vs %.0f)", v, b))
			}
		}
	}

	fmt.Println()
	fmt.Println("Counting:")
	for _, op := range []string{"request", "reject"} {
		check("counters."+op+" allocs", r.allocs("Counting/op="+op), true, 0, "allocs", fmt.Sprintf("(%.1f ns)", r.ns("Counting/op="+op)))
	}
	cb, cs := r.get("Count/impl=bare-handler", "cpu-ns/op"), r.get("Count/impl=sessionbridge", "cpu-ns/op")
	check("anonymous request, middleware over bare (cpu)", cs-cb, true, 1000, "ns",
		fmt.Sprintf("(allocs %.0f over bare: the closure mux rebuilds)", r.allocs("Count/impl=sessionbridge")-r.allocs("Count/impl=bare-handler")))

	fmt.Println()
	fmt.Println("JWT medians, time/op · allocs/op (golang-jwt: the bare parse, no router; the same in both rows):")
	fmt.Println()
	impls := []string{"bare-handler", "sessionbridge-repeat", "sessionbridge-first", "golang-jwt", "auth0", "jwtauth"}
	fmt.Printf("| alg | transport | %s |\n", strings.Join(impls, " | "))
	fmt.Printf("|---|---|%s\n", strings.Repeat("---:|", len(impls)))
	for _, alg := range algs {
		for _, tr := range []string{"bearer", "cookie"} {
			var cells []string
			for _, impl := range impls {
				name := jwt(alg, tr, impl)
				if impl == "golang-jwt" {
					name = jwt(alg, "none", impl)
				}
				cells = append(cells, cell(r, name))
			}
			fmt.Printf("| %s | %s | %s |\n", alg, tr, strings.Join(cells, " | "))
		}
	}
	fmt.Println()
	fmt.Println("Session medians, time/op · allocs/op:")
	fmt.Println()
	fmt.Println("| path | impl | time/op · allocs/op |")
	fmt.Println("|---|---|---:|")
	for _, name := range []string{
		"path=load/impl=boj-redistore", "path=load/impl=boj-redistore-1rtt", "path=load/impl=redisstore",
		"path=load/impl=sessionbridge-store", "path=load/impl=sessionbridge-redis",
		"path=router/impl=bare-handler", "path=router/impl=boj-redistore",
		"path=router/impl=sessionbridge-store", "path=router/impl=sessionbridge-redis",
	} {
		path, impl, _ := strings.Cut(name, "/")
		fmt.Printf("| %s | %s | %s |\n", strings.TrimPrefix(path, "path="), strings.TrimPrefix(impl, "impl="), cell(r, "Session/"+name))
	}

	fmt.Println()
	if missed > 0 {
		fmt.Printf("%d target(s) missed.\n", missed)
	} else {
		fmt.Println("All targets met.")
	}
}
