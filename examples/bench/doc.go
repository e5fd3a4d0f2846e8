// Package bench compares sessionbridge with its peers, side by side in one
// run: golang-jwt/jwt (bare ParseWithClaims), auth0/go-jwt-middleware and
// go-chi/jwtauth for tokens; gorilla/sessions with boj/redistore for
// sessions, on a real redis-server; and the cryptographic floors (HMAC,
// ECDSA, Ed25519, RSA verification, a map lookup).
//
// It is a module of its own so that the library's go.mod never carries the
// peers. Run it with scripts/bench.sh (make bench), which summarises the
// results with benchstat and prints the ratios against the targets of
// docs/benchmarks.md. The names are built for benchstat's projections:
//
//	BenchmarkJWT/alg=ES256/transport=bearer/impl=sessionbridge-repeat
//	BenchmarkSession/path=load/impl=boj-redistore
//	BenchmarkFloor/op=ecdsa-p256-verify
//
// so that `benchstat -col /impl` puts the implementations in columns.
//
// Redis: the session benchmarks start their own redis-server (found on
// PATH) on a free loopback port with persistence off, or use REDIS_URL.
package bench
