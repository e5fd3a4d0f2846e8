// Package traffic simulates the users of the demo monolith: browser users
// who log in and browse the pages and the API with their cookie jar, API
// clients that use bearer tokens (and the bearer→cookie exchange),
// anonymous visitors and forged credentials. It keeps a tally of what it
// sent, per route template and expected source, so that tests can compare
// it with the bridge's fleet-wide counts.
//
// It is used by the traffic simulator (legacyapp/cmd/traffic), the load
// test and the migration rehearsal test.
package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Kind is a kind of simulated user.
type Kind int

// Kinds of users.
const (
	Browser   Kind = iota // logs in, browses pages and the API with cookies
	APIClient             // logs in once, then calls the API with a bearer token
	Anonymous             // no credentials
	Forger                // forged bearer tokens and session cookies
	numKinds
)

var kindNames = [numKinds]string{"browser", "api", "anonymous", "forged"}

func (k Kind) String() string { return kindNames[k] }

// Mix weighs the kinds of users; zero weights leave a kind out.
type Mix [numKinds]int

// DefaultMix is mostly browser users, some API clients, a few anonymous
// visitors and forgers.
var DefaultMix = Mix{Browser: 6, APIClient: 2, Anonymous: 1, Forger: 1}

// Credential is a demo user's login.
type Credential struct{ Username, Password string }

// DemoUsers are the demo monolith's users.
var DemoUsers = []Credential{{"alice", "alice-password"}, {"bob", "bob-password"}}

// Config configures a run.
type Config struct {
	// BaseURL of the demo, e.g. http://127.0.0.1:8080. Required unless
	// BaseURLs is set.
	BaseURL string
	// BaseURLs are several instances of the demo behind one host name (as
	// behind a load balancer): requests go round-robin to them, and cookies
	// are shared (they do not depend on the port).
	BaseURLs []string
	// Users to log in as. Default DemoUsers.
	Users []Credential
	// Mix of user kinds. Default DefaultMix.
	Mix Mix
	// Workers is the number of concurrent simulated users. Default 8.
	Workers int
	// Rate caps the total requests per second; 0 means as fast as the
	// workers go.
	Rate float64
	// Duration bounds the run; it also stops when ctx ends. Required.
	Duration time.Duration
	// Requests, when > 0, stops each worker after that many requests.
	Requests int
	// Seed makes the run repeatable. Default 1.
	Seed uint64
	// Timeout of each request. Default 10s.
	Timeout time.Duration
}

// Tally counts requests by route template and by what the simulator
// expects the bridge to count them as.
type Tally struct {
	mu sync.Mutex
	// Routes: requests per route template.
	Routes map[string]int
	// Expected: requests per expected source ("session_or_jwt_cookie",
	// "jwt_bearer", "anonymous", "rejected").
	Expected map[string]int
	// Status: responses per status code.
	Status map[int]int
	// Errors: transport errors.
	Errors int
	// LoggedOut counts browser requests that found their user logged
	// out (a 401 or a redirect to /login after login).
	LoggedOut int
}

func newTally() *Tally {
	return &Tally{Routes: map[string]int{}, Expected: map[string]int{}, Status: map[int]int{}}
}

func (t *Tally) add(route, expect string, status int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.Errors++
		return
	}
	t.Routes[route]++
	t.Expected[expect]++
	t.Status[status]++
}

// Total is the number of requests that got a response.
func (t *Tally) Total() int {
	n := 0
	for _, v := range t.Routes {
		n += v
	}
	return n
}

// ServerErrors counts 5xx responses.
func (t *Tally) ServerErrors() int {
	n := 0
	for code, v := range t.Status {
		if code >= 500 {
			n += v
		}
	}
	return n
}

// Simulator is a population of simulated users that keep their cookie
// jars and tokens across runs, as real users do across deploys.
type Simulator struct {
	cfg   Config
	users []*user
}

// New returns a simulator for cfg (Duration is not needed).
func New(cfg Config) (*Simulator, error) {
	if cfg.BaseURL != "" {
		cfg.BaseURLs = append([]string{cfg.BaseURL}, cfg.BaseURLs...)
	}
	if len(cfg.BaseURLs) == 0 {
		return nil, errors.New("traffic: Config.BaseURL or BaseURLs is required")
	}
	if len(cfg.Users) == 0 {
		cfg.Users = DemoUsers
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	s := &Simulator{cfg: cfg}
	for w := 0; w < cfg.Workers; w++ {
		s.users = append(s.users, newUser(cfg, w))
	}
	return s, nil
}

// Run simulates users until cfg.Duration passes (requests in flight then
// finish) or ctx ends (they are abandoned), and returns the tally.
func Run(ctx context.Context, cfg Config) (*Tally, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("traffic: Config.Duration is required")
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return s.Run(ctx, cfg.Duration)
}

// Run lets every user act for d (or ctx's end) and returns what was sent
// in this run.
func (s *Simulator) Run(ctx context.Context, d time.Duration) (*Tally, error) {
	cfg := s.cfg
	// Workers stop starting requests at the deadline but let the ones in
	// flight finish, so that the tally counts exactly what was served.
	deadline := time.Now().Add(d)
	var tick <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer t.Stop()
		tick = t.C
	}
	tally := newTally()
	var wg sync.WaitGroup
	for _, u := range s.users {
		wg.Add(1)
		go func(u *user) {
			defer wg.Done()
			u.tally = tally
			defer u.client.CloseIdleConnections()
			for n := 0; cfg.Requests <= 0 || n < cfg.Requests; n++ {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil || !time.Now().Before(deadline) {
					return
				}
				u.step(ctx)
			}
		}(u)
	}
	wg.Wait()
	return tally, nil
}

// user is one simulated user.
type user struct {
	cfg      Config
	kind     Kind
	cred     Credential
	rng      *rand.Rand
	client   *http.Client
	jar      http.CookieJar
	tally    *Tally
	loggedIn bool
	token    string // API clients: the bearer token
	n        int    // requests sent, for the round-robin over BaseURLs
}

func newUser(cfg Config, w int) *user {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
	total := 0
	for _, v := range cfg.Mix {
		total += v
	}
	pick, kind := rng.IntN(total), Kind(0)
	for k, v := range cfg.Mix {
		if pick < v {
			kind = Kind(k)
			break
		}
		pick -= v
	}
	jar, _ := cookiejar.New(nil)
	return &user{
		cfg: cfg, kind: kind, cred: cfg.Users[w%len(cfg.Users)], rng: rng, jar: jar,
		client: &http.Client{
			Jar:     jar,
			Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// page is a route the simulator visits: template and a concrete path.
type page struct{ route, path string }

var (
	htmlPages = []page{{"/profile", "/profile"}, {"/cart", "/cart"}}
	apiPages  = []page{{"/api/me", "/api/me"}, {"/api/orders", "/api/orders"}, {"/api/orders/{id}", "/api/orders/1001"}}
)

func (u *user) step(ctx context.Context) {
	switch u.kind {
	case Browser:
		u.browse(ctx)
	case APIClient:
		u.callAPI(ctx)
	case Anonymous:
		p := u.any(append(append([]page{{"/healthz", "/healthz"}, {"/login", "/login"}}, htmlPages...), apiPages...))
		u.do(ctx, http.MethodGet, p, nil, "", "anonymous")
	case Forger:
		u.forge(ctx)
	}
}

func (u *user) any(pages []page) page { return pages[u.rng.IntN(len(pages))] }

// browse: log in once, then pages and API calls with the cookie jar.
func (u *user) browse(ctx context.Context) {
	if !u.loggedIn {
		u.login(ctx)
		return
	}
	p := u.any(append(append([]page{}, htmlPages...), apiPages...))
	status := u.do(ctx, http.MethodGet, p, nil, "", "session_or_jwt_cookie")
	if status == http.StatusUnauthorized || status == http.StatusSeeOther {
		u.tally.mu.Lock()
		u.tally.LoggedOut++
		u.tally.mu.Unlock()
	}
}

func (u *user) login(ctx context.Context) {
	form := url.Values{"username": {u.cred.Username}, "password": {u.cred.Password}}
	status := u.do(ctx, http.MethodPost, page{"/login", "/login"}, strings.NewReader(form.Encode()), "", "anonymous")
	u.loggedIn = status == http.StatusSeeOther
}

// callAPI: log in and convert once to get a token, then bearer calls; now
// and then the bearer→cookie exchange.
func (u *user) callAPI(ctx context.Context) {
	if u.token == "" {
		if !u.loggedIn {
			u.login(ctx)
			return
		}
		u.do(ctx, http.MethodGet, page{"/api/me", "/api/me"}, nil, "", "session_or_jwt_cookie")
		base, _ := url.Parse(u.cfg.BaseURLs[0])
		for _, c := range u.jar.Cookies(base) {
			if c.Name == "id_token" {
				u.token = c.Value
			}
		}
		return
	}
	if u.rng.IntN(20) == 0 {
		u.do(ctx, http.MethodPost, page{"/auth/cookie", "/auth/cookie"}, nil, "Bearer "+u.token, "jwt_bearer")
		return
	}
	u.do(ctx, http.MethodGet, u.any(apiPages), nil, "Bearer "+u.token, "jwt_bearer")
}

// forge sends a forged bearer token or a forged session cookie.
func (u *user) forge(ctx context.Context) {
	p := u.any(apiPages)
	if u.rng.IntN(2) == 0 {
		forged := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiaXNzIjoiZXZpbCJ9."
		u.do(ctx, http.MethodGet, p, nil, "Bearer "+forged, "rejected")
		return
	}
	req := page{p.route, p.path}
	u.doCookie(ctx, req, &http.Cookie{Name: "session", Value: "MTcwMDAwMDAwMHxmb3JnZWR8AAAA"}, "rejected")
}

// base returns the instance for the next request.
func (u *user) base() string {
	u.n++
	return u.cfg.BaseURLs[u.n%len(u.cfg.BaseURLs)]
}

func (u *user) do(ctx context.Context, method string, p page, body io.Reader, authz, expect string) int {
	req, err := http.NewRequestWithContext(ctx, method, u.base()+p.path, body)
	if err != nil {
		return 0
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	return u.send(ctx, req, p.route, expect)
}

func (u *user) doCookie(ctx context.Context, p page, c *http.Cookie, expect string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base()+p.path, nil)
	if err != nil {
		return 0
	}
	req.AddCookie(c)
	client := &http.Client{Timeout: u.cfg.Timeout}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	return u.record(ctx, resp, err, p.route, expect)
}

func (u *user) send(ctx context.Context, req *http.Request, route, expect string) int {
	resp, err := u.client.Do(req)
	return u.record(ctx, resp, err, route, expect)
}

func (u *user) record(ctx context.Context, resp *http.Response, err error, route, expect string) int {
	if err != nil {
		if ctx.Err() != nil {
			return 0 // the run ended: the request may or may not have been served
		}
		u.tally.add(route, expect, 0, fmt.Errorf("traffic: %w", err))
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	u.tally.add(route, expect, resp.StatusCode, nil)
	return resp.StatusCode
}
