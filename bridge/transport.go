package bridge

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"
)

// DownstreamTokenTTL is the lifetime of tokens minted for downstream calls
// made on behalf of a session that was not converted.
const DownstreamTokenTTL = time.Minute

// Transport (on base, nil for the default) puts the JWT of the request
// context's identity (minted briefly for an unconverted session) on requests
// to the hosts listed ("api.internal[:8443]") as a bearer token. Requests
// with an Authorization header, without identity, or elsewhere pass as is.
func (b *Bridge) Transport(base http.RoundTripper, hosts ...string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{b: b, base: base, hosts: slices.Clone(hosts)}
}

type transport struct {
	b     *Bridge
	base  http.RoundTripper
	hosts []string
}

// allowed reports whether the token may go to u's host: one listed as
// it is (host:port), or by name when the entry has no port.
func (t *transport) allowed(r *http.Request) bool {
	if r.URL == nil {
		return false
	}
	for _, h := range t.hosts {
		if strings.EqualFold(h, r.URL.Host) || (!strings.Contains(h, ":") && strings.EqualFold(h, r.URL.Hostname())) {
			return true
		}
	}
	return false
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") != "" || !t.allowed(r) || !sameOriginRedirect(r) {
		return t.base.RoundTrip(r)
	}
	id, ok := IdentityFrom(r.Context())
	if !ok {
		return t.base.RoundTrip(r)
	}
	tok := id.token
	if tok == "" && id.source == SourceSession && id.session != nil {
		var err error
		tok, err = t.b.mintDownstream(r.Context(), id)
		if err != nil {
			// A RoundTripper closes the request body, even on error.
			if r.Body != nil {
				_ = r.Body.Close()
			}
			return nil, err
		}
	}
	if tok == "" {
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r)
}

// sameOriginRedirect reports whether r is a first request, or a redirect
// that stays on the first request's host without leaving https: the only
// requests the token may be added to. http.Client sends a redirect
// through the transport again, with r.Response set.
func sameOriginRedirect(r *http.Request) bool {
	first := r
	for i := 0; first.Response != nil && first.Response.Request != nil && i < 100; i++ {
		first = first.Response.Request
	}
	if first == r {
		return true
	}
	if first.URL == nil || r.URL == nil {
		return false
	}
	if strings.EqualFold(first.URL.Scheme, "https") && !strings.EqualFold(r.URL.Scheme, "https") {
		return false
	}
	return strings.EqualFold(first.URL.Host, r.URL.Host)
}

// mintDownstream mints a short-lived token for a session identity.
func (b *Bridge) mintDownstream(ctx context.Context, id Identity) (string, error) {
	tok, _, err := b.mintFor(ctx, id.session, DownstreamTokenTTL, id.sid, "", b.cfg.Now())
	return tok, err
}
