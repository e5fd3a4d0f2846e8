// Package bridge moves a gorilla/mux monolith from server-side gorilla
// sessions to stateless JWT authentication one route at a time, in
// production, without logging anyone out. It is the request path, and
// imports neither go-redis nor Prometheus: the fleet-wide side (counts,
// report, dashboard, run-time modes, revocations) is bridge/fleet, the
// Redis session sources are in bridge/redisstore, the Prometheus collector
// is bridge/bridgeprom.
//
//	b, err := bridge.New(bridge.Config{Sessions: bridge.StoreSource(store, "session"),
//		SIDKey: sidKey, SigningKey: key, Issuer: "https://app.example.com", Audience: "app",
//		Router: r, Routes: bridge.Routes{"/api/me": bridge.Dual}})
//	r.Use(b.Middleware) // handlers: id, ok := bridge.IdentityFrom(r.Context())
//
// # Modes
//
// [Legacy] counts the credential and never converts or refuses. [Dual]
// accepts a JWT or the session and converts session-only requests into an
// HttpOnly JWT cookie. [JWT] accepts JWTs only. A route leaves Legacy once
// its handler reads [IdentityFrom] instead of the session. A request with
// a valid JWT never touches the session store (but for the sliding re-mint
// in a cookie token's last quarter).
//
// # Security
//
// Tokens are checked for size and alphabet before decoding; algorithms are
// pinned per key and keys bound to their issuer; exp is required; iss, aud,
// nbf and iat are checked with a bounded leeway; jku, x5u, jwk, x5c and
// crit are refused. Cookies are HttpOnly, Secure and SameSite, and
// cookie-authenticated unsafe requests pass
// [net/http.CrossOriginProtection]. Every refusal is a 401, 403, 500
// (undecodable session) or 503 (store down) with a counted reason; tokens
// and session IDs are never logged.
package bridge
