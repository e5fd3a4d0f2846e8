// Package webtest holds the HTTP and test plumbing shared by the bridge's
// internal tests (package bridge, which cannot import
// internal/bridgetest: that imports bridge) and by internal/bridgetest.
// It imports no package of the bridge, so both sides can use it.
//
//   - NewJarClient(t, ts), Do(t, c, method, url, hdr, cookies...): a
//     browser-like client and one request with its body read (Response:
//     Cookie, Reason, JSON); Bearer makes the Authorization header;
//   - Clock: a settable clock for Config.Now;
//   - NewLogger: a debug-level logger into a buffer; CheckNoSecrets,
//     CookiesDesc: credentials stay out of logs and test output;
//   - TokenPayload: a token's claims decoded without verification;
//   - RedisCalls, ResetRedisStats: the commands a redis-server executed;
//   - SIDKey: the key of the sid hash of the test bridges.
package webtest

// SIDKey keys the sid hash of the test bridges.
var SIDKey = []byte("sid-key-sid-key-sid-key-sid-key-")
