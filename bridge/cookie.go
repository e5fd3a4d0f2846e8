package bridge

import (
	"net/http"
	"strings"
	"time"
)

// cookieValue returns the value of the first cookie named name in r's
// Cookie headers.
func cookieValue(r *http.Request, name string) string {
	v, _ := cookieValues(r, name)
	return v
}

// cookieValues returns the value of the first cookie named name in r's
// Cookie headers, as r.Cookie does, and how many cookies have that name
// (0, 1, or 2 for several, empty ones included), without allocating
// (net/http's r.Cookie parses every cookie into a new slice). Surrounding
// double quotes are removed.
func cookieValues(r *http.Request, name string) (first string, n int) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if n++; n > 1 {
				return first, n
			}
			first = v
		}
	}
	return first, n
}

// bearerToken returns the JWT of an "Authorization: Bearer" header, and
// whether there is one.
func bearerToken(r *http.Request) (string, bool) {
	tok, _ := authorization(r)
	return tok, tok != ""
}

// authorization reads the Authorization header: a bearer token shaped
// like a JWT (jwtShaped) is the bridge's, tok; any other credential there
// (a bearer API key, Basic, another scheme) is the app's own: app. The
// scheme is "Bearer" in any case, then one space; "Bearer" with nothing
// after it is no credential.
func authorization(r *http.Request) (tok string, app bool) {
	// The key is canonical: no canonicalisation on every request.
	v := r.Header["Authorization"]
	if len(v) == 0 {
		return "", false
	}
	rest, ok := strings.CutPrefix(v[0], "Bearer ") // the common spelling, fast
	if !ok {
		var scheme string
		scheme, rest, ok = strings.Cut(v[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			h := strings.TrimSpace(v[0])
			return "", h != "" && !strings.EqualFold(h, "Bearer")
		}
	}
	tok = strings.TrimSpace(rest)
	if jwtShaped(tok) {
		return tok, false
	}
	return "", tok != ""
}

// jwtShaped reports whether a bearer token is meant as a JWT, to be
// verified strictly: it has a dot (JWS, JWE, or one mangled), or starts
// as a JSON header in base64url does, or as a JWS JSON serialization. API
// keys do none of these.
func jwtShaped(tok string) bool {
	return strings.HasPrefix(tok, "eyJ") || strings.HasPrefix(tok, "{") || strings.IndexByte(tok, '.') >= 0
}

// setTokenCookie sets the JWT cookie to tok, living until exp. It reports
// false, setting nothing, when tok has less than a second to live.
func (b *Bridge) setTokenCookie(w http.ResponseWriter, tok string, exp, now time.Time) bool {
	maxAge := int(exp.Sub(now) / time.Second)
	if maxAge <= 0 {
		return false
	}
	http.SetCookie(w, &http.Cookie{
		Name:     b.cfg.CookieName,
		Value:    tok,
		Path:     "/",
		Domain:   b.cfg.CookieDomain,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   !b.cfg.InsecureDevCookies,
		SameSite: b.cfg.SameSite,
	})
	w.Header().Set("Cache-Control", "no-store")
	return true
}

// clearCookie expires the cookie name (set with Path=/ as the bridge and
// the legacy stores set theirs).
func (b *Bridge) clearCookie(w http.ResponseWriter, name string) {
	var domain string
	if name == b.cfg.CookieName {
		domain = b.cfg.CookieDomain
	}
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Domain:   domain,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   !b.cfg.InsecureDevCookies,
		SameSite: b.cfg.SameSite,
	})
	w.Header().Set("Cache-Control", "no-store")
}

// ClearTokenCookie expires the JWT cookie (where a login starts a session).
func (b *Bridge) ClearTokenCookie(w http.ResponseWriter) { b.clearCookie(w, b.cfg.CookieName) }
