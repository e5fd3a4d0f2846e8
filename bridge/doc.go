// Package bridge moves a gorilla/mux monolith from server-side gorilla
// sessions to stateless JWT authentication one route at a time, in
// production, without logging anyone out.
//
// A [Bridge] is built once from a [Config] and used as mux middleware:
//
//	b, err := bridge.New(bridge.Config{
//		Sessions:   bridge.StoreSource(store, "session"),
//		SigningKey: key,
//		Issuer:     "https://app.example.com",
//		Audience:   "app",
//		Router:     r,
//		Routes:     bridge.Routes{"/api/me": bridge.Dual},
//	})
//	r.Use(b.Middleware)
//	go b.Run(ctx)
//	defer b.Close()
//
// Handlers read who made the request with [IdentityFrom].
//
// # Modes
//
// Each route (a mux path template) has a [Mode]:
//
//   - [Legacy] observes only: it identifies and counts the credential, never
//     converts and never refuses. Deploy it everywhere first for a baseline.
//   - [Dual] accepts a JWT (bearer header or cookie) or the legacy session,
//     and converts session-only requests: a JWT is minted from the session
//     and set as an HttpOnly cookie, for the share of sessions the rollout
//     percentage selects.
//   - [JWT] accepts JWTs only; a session-only request gets 401, counted as
//     session_on_jwt_route.
//
// A route may move to Dual or JWT once its handler reads IdentityFrom
// instead of the session.
//
// # Migration
//
// A request with a valid JWT never touches the session store (except the
// sliding re-mint in a cookie token's last quarter): as users convert,
// session reads fall toward zero. Minted tokens carry sid, a keyed hash of
// the session ID (never the raw ID), and never outlive their session.
//
// # Metrics
//
// Every request is counted exactly once per (route, mode, source) in
// lock-free atomics indexed by a route number fixed at start; refused
// credentials are counted per reason. [Bridge.Snapshot] reads them.
//
// # Security
//
// Tokens are checked for size and alphabet before decoding, algorithms are
// pinned per key and keys bound to their issuer, exp is required, iss, aud,
// nbf and iat are checked with a bounded leeway, and tokens naming key
// material (jku, x5u, jwk, x5c) or critical extensions are refused; nothing
// is ever fetched from a token. Cookies are HttpOnly, Secure and SameSite;
// unsafe requests authenticated by a cookie pass
// [net/http.CrossOriginProtection]. Every refusal is a 401, 403 or 503 with
// a counted, logged reason; tokens and session IDs are never logged.
package bridge
