'use strict';

// An Express service that verifies the JWTs sessionbridge mints, knowing
// nothing but the monolith's JWKS URL, its issuer and the audience:
// express-jwt checks the signature (ES256, the bridge's default), iss, aud
// and exp; jwks-rsa fetches and caches the monolith's public keys by kid.
//
// Run it:  JWKS_URL=http://127.0.0.1:8080/.well-known/jwks.json \
//          ISSUER=http://127.0.0.1:8080 AUDIENCE=legacyapp node server.js
// (PORT, default 8091, and HOST, default 127.0.0.1, choose where it listens.)

const express = require('express');
const { expressjwt } = require('express-jwt');
const jwksRsa = require('jwks-rsa');

// The bridge's JWT cookie: the seed's id_token (bridge.DevCookieName, and
// the bridge's Config.CookieName when an app keeps that name). With Secure
// cookies the bridge's default is __Host-id_token: COOKIE_NAME=__Host-id_token.
const COOKIE_NAME = process.env.COOKIE_NAME || 'id_token';

// cookieValue returns the value of the first cookie named `name` in a Cookie
// header, without its surrounding quotes, or undefined.
function cookieValue(header, name) {
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length > 1 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1);
    }
    return value || undefined;
  }
  return undefined;
}

// getToken is the seed's: the Authorization: Bearer header first, then the
// HttpOnly id_token cookie (set by the bridge's conversion or by
// POST /auth/cookie).
function getToken(req) {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m) return m[1];
  }
  return cookieValue(req.headers.cookie, COOKIE_NAME);
}

// requireExp refuses tokens without an exp: jsonwebtoken checks exp only
// when it is present, and the bridge's tokens always carry one.
function requireExp(req, res, next) {
  if (!req.auth || typeof req.auth.exp !== 'number') {
    return unauthorized(res, 'invalid_token');
  }
  return next();
}

function unauthorized(res, reason) {
  res.set('WWW-Authenticate', reason === 'credentials_required' ? 'Bearer' : 'Bearer error="invalid_token"');
  res.set('Cache-Control', 'no-store');
  return res.status(401).json({ error: 'Unauthorized', reason });
}

// createApp builds the app. jwksUri, issuer and audience are required.
function createApp({ jwksUri, issuer, audience } = {}) {
  if (!jwksUri || !issuer || !audience) {
    throw new Error('createApp: jwksUri, issuer and audience are required');
  }
  const requireJwt = expressjwt({
    secret: jwksRsa.expressJwtSecret({
      jwksUri,
      cache: true,
      rateLimit: true,
      jwksRequestsPerMinute: 10,
      timeout: 5000,
    }),
    algorithms: ['ES256'],
    issuer,
    audience,
    getToken,
  });

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (req, res) => res.type('text/plain').send('ok\n'));
  app.get('/api/whoami', requireJwt, requireExp, (req, res) => {
    res.json({ sub: req.auth.sub });
  });

  // Refusals are 401 with a short reason, never the token or the cause;
  // a JWKS that cannot be fetched is 503.
  app.use((err, req, res, next) => {
    if (err && err.name === 'UnauthorizedError') return unauthorized(res, err.code || 'invalid_token');
    if (err && err.name === 'JwksRateLimitError') return unauthorized(res, 'invalid_token');
    if (err && err.name === 'JwksError') {
      res.set('Retry-After', '5');
      return res.status(503).json({ error: 'Service Unavailable', reason: 'jwks_unavailable' });
    }
    return next(err);
  });
  return app;
}

module.exports = { createApp, getToken, cookieValue };

if (require.main === module) {
  const { JWKS_URL, ISSUER, AUDIENCE } = process.env;
  const port = Number(process.env.PORT || 8091);
  const host = process.env.HOST || '127.0.0.1';
  const app = createApp({ jwksUri: JWKS_URL, issuer: ISSUER, audience: AUDIENCE });
  const server = app.listen(port, host, () => {
    console.log(`express-downstream listening on http://${host}:${port} (issuer ${ISSUER}, audience ${AUDIENCE})`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
