'use strict';

// The Express downstream verifies tokens minted by sessionbridge: the Go
// helper ./tokenserver (run with `go run` from the repository root) serves
// a bridge's JWKS and prints tokens; the app is started on a free port and
// called with each of them.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const { createApp, getToken, cookieValue } = require('../server.js');

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const GO = process.env.GO || 'go';
// The first `go run` may compile the bridge and its dependencies.
const START_TIMEOUT_MS = 240_000;
const REQUEST_TIMEOUT_MS = 10_000;

let tokenServer; // the `go run` child, leader of its own process group
let info; // what it printed
let server; // the Express app's http.Server
let baseURL;

// startTokenServer spawns the Go helper and resolves with its JSON line.
function startTokenServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(GO, ['run', './examples/express-downstream/tokenserver', '-exit-on-eof', '-max-life', '10m'], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // its own process group: `go run` and the program it builds die together
    });
    tokenServer = child;
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    const timer = setTimeout(() => {
      reject(new Error(`tokenserver printed nothing in ${START_TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, START_TIMEOUT_MS);
    const lines = readline.createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line));
      } catch (err) {
        reject(new Error(`tokenserver printed ${JSON.stringify(line)}: ${err.message}`));
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tokenserver exited (${code ?? signal}) before printing; stderr: ${stderr}`));
    });
  });
}

function stopTokenServer() {
  const child = tokenServer;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
      resolve();
    }, 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin.end(); // -exit-on-eof
    try {
      process.kill(-child.pid, 'SIGTERM'); // the whole group: go run and its program
    } catch {}
  });
}

before(async () => {
  info = await startTokenServer();
  const app = createApp({ jwksUri: info.jwks_url, issuer: info.issuer, audience: info.audience });
  await new Promise((resolve, reject) => {
    server = app.listen(0, '127.0.0.1', resolve);
    server.once('error', reject);
  });
  baseURL = `http://127.0.0.1:${server.address().port}`;
}, { timeout: START_TIMEOUT_MS + 10_000 });

after(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await stopTokenServer();
}, { timeout: 15_000 });

async function whoami(headers = {}) {
  const res = await fetch(`${baseURL}/api/whoami`, { headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const body = await res.json().catch(() => null);
  return { status: res.status, body };
}

// tamper changes the token's sub from "1" to "2" without re-signing it.
function tamper(token) {
  const [h, p, s] = token.split('.');
  const payload = Buffer.from(p, 'base64url').toString('utf8');
  const changed = payload.replace('"sub":"1"', '"sub":"2"');
  assert.notEqual(changed, payload, 'the token names sub 1');
  return [h, Buffer.from(changed, 'utf8').toString('base64url'), s].join('.');
}

const T = { timeout: 30_000 };

test('a bearer token is accepted and its sub returned', T, async () => {
  const { status, body } = await whoami({ Authorization: `Bearer ${info.token}` });
  assert.equal(status, 200);
  assert.deepEqual(body, { sub: '1' });
});

test('the id_token cookie is accepted', T, async () => {
  const { status, body } = await whoami({ Cookie: `theme=dark; id_token=${info.token}` });
  assert.equal(status, 200);
  assert.deepEqual(body, { sub: '1' });
});

test('the bearer header wins over the cookie', T, async () => {
  const { status } = await whoami({ Authorization: `Bearer ${tamper(info.token)}`, Cookie: `id_token=${info.token}` });
  assert.equal(status, 401);
});

test('no token is refused', T, async () => {
  const { status, body } = await whoami();
  assert.equal(status, 401);
  assert.equal(body.reason, 'credentials_required');
});

const refused = [
  ['a tampered token', () => tamper(info.token)],
  ['a token for another audience', () => info.token_other_audience],
  ['an expired token', () => info.token_expired],
  ['a token signed by a key not in the JWKS', () => info.token_other_key],
  ['garbage', () => 'not-a-jwt'],
];
for (const [name, token] of refused) {
  test(`${name} is refused, as bearer and as cookie`, T, async () => {
    for (const headers of [{ Authorization: `Bearer ${token()}` }, { Cookie: `id_token=${token()}` }]) {
      const { status, body } = await whoami(headers);
      assert.equal(status, 401, JSON.stringify(headers).slice(0, 40));
      assert.equal(body.reason, 'invalid_token');
    }
  });
}

test('an app with another issuer refuses the token', T, async () => {
  const app = createApp({ jwksUri: info.jwks_url, issuer: 'https://other.example', audience: info.audience });
  const other = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  try {
    const res = await fetch(`http://127.0.0.1:${other.address().port}/api/whoami`, {
      headers: { Authorization: `Bearer ${info.token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    assert.equal(res.status, 401);
  } finally {
    other.closeAllConnections();
    await new Promise((resolve) => other.close(resolve));
  }
});

test('getToken: bearer first, then the id_token cookie', () => {
  assert.equal(getToken({ headers: { authorization: 'Bearer abc', cookie: 'id_token=def' } }), 'abc');
  assert.equal(getToken({ headers: { authorization: 'bearer abc' } }), 'abc');
  assert.equal(getToken({ headers: { authorization: 'Basic xyz', cookie: 'id_token=def' } }), 'def');
  assert.equal(getToken({ headers: { cookie: 'a=1; id_token="def"; b=2' } }), 'def');
  assert.equal(getToken({ headers: { cookie: 'xid_token=nope' } }), undefined);
  assert.equal(getToken({ headers: {} }), undefined);
  assert.equal(cookieValue('id_token=', 'id_token'), undefined);
});

test('createApp requires jwksUri, issuer and audience', () => {
  assert.throws(() => createApp({ issuer: 'i', audience: 'a' }));
  assert.throws(() => createApp({ jwksUri: 'http://127.0.0.1:1/', audience: 'a' }));
  assert.throws(() => createApp({ jwksUri: 'http://127.0.0.1:1/', issuer: 'i' }));
});
