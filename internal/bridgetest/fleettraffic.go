package bridgetest

// Traffic of every kind on every route of Routes, and its tally: what the
// fleet's flush tests (bridge/fleet) and the Prometheus collector's tests
// (bridge/bridgeprom) serve through Bridges attached to a Fleet, and the
// counts the counting rules make of it.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/sessions"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/syncbuf"
)

// Kind is the credential a traffic request carries.
type Kind int

// The kinds of traffic requests.
const (
	KindAnon      Kind = iota // nothing
	KindBearer                // a valid bearer token
	KindCookie                // a valid JWT cookie
	KindSession               // a legacy session cookie (gorilla CookieStore)
	KindBadBearer             // a bearer token signed by an unknown key
	NumKinds
)

// String returns the kind's name.
func (k Kind) String() string {
	return [...]string{"anonymous", "bearer", "jwt_cookie", "session", "bad_bearer"}[k]
}

// Expect is how the counting rules count a request of kind k on a route
// in mode m: its source, the reason counted (if any), whether the session
// is converted, and the status answered.
func Expect(m bridge.Mode, k Kind) (src bridge.Source, reason bridge.Reason, hasReason, converted bool, status int) {
	switch k {
	case KindBearer:
		return bridge.SourceJWTBearer, 0, false, false, http.StatusOK
	case KindCookie:
		return bridge.SourceJWTCookie, 0, false, false, http.StatusOK
	case KindBadBearer:
		if m == bridge.Legacy {
			return bridge.SourceRejected, bridge.ReasonBearerInvalid, true, false, http.StatusOK
		}
		return bridge.SourceRejected, bridge.ReasonBearerInvalid, true, false, http.StatusUnauthorized
	case KindSession:
		switch m {
		case bridge.Legacy:
			return bridge.SourceSession, 0, false, false, http.StatusOK
		case bridge.Dual:
			return bridge.SourceSession, 0, false, true, http.StatusOK
		default:
			return bridge.SourceRejected, bridge.ReasonSessionOnJWT, true, false, http.StatusUnauthorized
		}
	default:
		if m == bridge.Legacy {
			return bridge.SourceAnonymous, 0, false, false, http.StatusOK
		}
		return bridge.SourceAnonymous, bridge.ReasonNoCredentials, true, false, http.StatusUnauthorized
	}
}

// RoutePath is a concrete path of a route template of Routes.
func RoutePath(route string) string { return strings.ReplaceAll(route, "{id}", "42") }

// SortedRoutes are Routes' templates, sorted.
func SortedRoutes() []string {
	var out []string
	for r := range Routes {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Creds are the credentials traffic requests carry; request i of a kind
// takes the kind's i-th credential, round robin.
type Creds struct {
	Bearer   []string
	Cookie   []string
	Sessions []*http.Cookie
	Bad      string
}

// NewCreds mints tokens with key (Issuer and Audience, the default
// TokenTTL) and saves nSessions sessions with store.
func NewCreds(t testing.TB, key *Key, store sessions.Store, nSessions int) *Creds {
	t.Helper()
	// A Bridge of the instances' configuration, only to mint with.
	minter, _, _ := NewBridge(t, func(c *bridge.Config) { c.SigningKey = key.Key })
	c := &Creds{}
	for i := range 3 {
		c.Bearer = append(c.Bearer, key.Mint(t, minter, fmt.Sprint("bearer-", i), nil))
		c.Cookie = append(c.Cookie, key.Mint(t, minter, fmt.Sprint("cookie-", i), nil))
	}
	c.Bad = NewKey(t).Mint(t, minter, "forger", nil)
	for i := range nSessions {
		ck, _ := SaveSession(t, store, User(fmt.Sprint(100+i)))
		c.Sessions = append(c.Sessions, ck)
	}
	return c
}

// Serve sends one GET of kind k to path through h and returns the
// recorder.
func Serve(h http.Handler, path string, k Kind, c *Creds, i int) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://app.test"+path, nil)
	switch k {
	case KindBearer:
		r.Header.Set("Authorization", "Bearer "+c.Bearer[i%len(c.Bearer)])
	case KindCookie:
		r.AddCookie(&http.Cookie{Name: bridge.DefaultCookieName, Value: c.Cookie[i%len(c.Cookie)]})
	case KindSession:
		r.AddCookie(c.Sessions[i%len(c.Sessions)])
	case KindBadBearer:
		r.Header.Set("Authorization", "Bearer "+c.Bad)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Tally counts what was served, per route and kind.
type Tally struct {
	mu sync.Mutex
	n  map[string]*[NumKinds]uint64
}

// NewTally returns an empty tally.
func NewTally() *Tally { return &Tally{n: map[string]*[NumKinds]uint64{}} }

// Add counts one request of kind k on route.
func (t *Tally) Add(route string, k Kind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.n[route]
	if a == nil {
		a = new([NumKinds]uint64)
		t.n[route] = a
	}
	a[k]++
}

// RouteWant is one route's expected counts.
type RouteWant struct {
	Counts     bridge.SourceCounts
	Converted  uint64
	Rejections map[string]uint64 // by reason name
}

// CountsString shows counts by source label.
func CountsString(c bridge.SourceCounts) string {
	b, _ := json.Marshal(c)
	return string(b)
}

// Want turns the tally into expected counts per route, modes as
// configured in Routes.
func (t *Tally) Want() map[string]*RouteWant {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]*RouteWant{}
	for route, a := range t.n {
		w := &RouteWant{Rejections: map[string]uint64{}}
		for k := Kind(0); k < NumKinds; k++ {
			n := a[k]
			if n == 0 {
				continue
			}
			src, reason, hasReason, conv, _ := Expect(Routes[route], k)
			w.Counts.Add(src, n)
			if hasReason {
				w.Rejections[reason.String()] += n
			}
			if conv {
				w.Converted += n
			}
		}
		out[route] = w
	}
	return out
}

// Total is the number of requests counted.
func (t *Tally) Total() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n uint64
	for _, a := range t.n {
		for _, v := range a {
			n += v
		}
	}
	return n
}

// Traffic is the traffic of a fleet of instances that share a signing key
// and a gorilla CookieStore of sessions (HashKey): the credentials every
// request carries and the tally of what was served.
type Traffic struct {
	Key   *Key
	Store *sessions.CookieStore
	Creds *Creds
	Tally *Tally
}

// NewTraffic returns traffic with a new key, a new store and nSessions
// sessions saved in it, and an empty tally.
func NewTraffic(t testing.TB, nSessions int) *Traffic {
	t.Helper()
	tr := &Traffic{Key: NewKey(t), Store: sessions.NewCookieStore(HashKey), Tally: NewTally()}
	tr.Creds = NewCreds(t, tr.Key, tr.Store, nSessions)
	return tr
}

// NewBridge returns a Bridge attached to f (a *fleet.Fleet), signing with
// tr.Key and reading sessions from tr.Store, with its own mux router
// carrying Routes (returned as h) and its logs (and so the Fleet's).
func (tr *Traffic) NewBridge(t testing.TB, f bridge.Fleet) (b *bridge.Bridge, h http.Handler, logs *syncbuf.Buffer) {
	t.Helper()
	router := NewRouter(nil)
	b, _, logs = NewBridge(t, func(c *bridge.Config) {
		c.SigningKey = tr.Key.Key
		c.Sessions = bridge.StoreSource(tr.Store, SessionName)
		c.Routes = Routes
		c.Router = router
		c.Fleet = f
	})
	router.Use(b.Middleware)
	return b, router, logs
}

// Drive sends rounds of one request per (route, kind) through h,
// checking each status and recording it in tr.Tally.
func (tr *Traffic) Drive(t testing.TB, h http.Handler, rounds int) {
	t.Helper()
	routes := SortedRoutes()
	for i := range rounds {
		for _, route := range routes {
			for k := Kind(0); k < NumKinds; k++ {
				w := Serve(h, RoutePath(route), k, tr.Creds, i)
				_, _, _, conv, status := Expect(Routes[route], k)
				if w.Code != status {
					t.Errorf("%s %s: status %d, want %d", route, k, w.Code, status)
				}
				if conv && !strings.Contains(w.Header().Get("Set-Cookie"), bridge.DefaultCookieName+"=") {
					t.Errorf("%s %s: no JWT cookie set", route, k)
				}
				tr.Tally.Add(route, k)
			}
		}
	}
}
