'use strict';
// Tokens made by livekit-cli, verified by the Node SDK's TokenVerifier.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TokenVerifier } = require('livekit-server-sdk');
const h = require('./harness');

function cliToken() {
  const r = h.runCli([
    'token', 'create',
    '--api-key', h.API_KEY, '--api-secret', h.API_SECRET,
    '--room', 'r1', '--identity', 'alice', '--join',
    '--name', 'Alice', '--metadata', 'm', '--valid-for', '10m',
  ]);
  assert.equal(r.status, 0, r.describe());
  const m = /^Access token: (\S+)\s*$/m.exec(r.stdout);
  assert.ok(m, `no "Access token: <jwt>" line\n${r.describe()}`);
  return m[1];
}

test('CLI join token verifies with Node TokenVerifier', async () => {
  const before = Math.floor(Date.now() / 1000);
  const token = cliToken();
  const after = Math.floor(Date.now() / 1000);
  const claims = await new TokenVerifier(h.API_KEY, h.API_SECRET).verify(token);
  assert.equal(claims.sub, 'alice');
  assert.equal(claims.iss, h.API_KEY);
  assert.equal(claims.name, 'Alice');
  assert.equal(claims.metadata, 'm');
  assert.equal(claims.video.roomJoin, true);
  assert.equal(claims.video.room, 'r1');
  assert.ok(!claims.video.roomAdmin, 'a join token must not grant roomAdmin');
  assert.ok(claims.exp >= before + 600 - 5 && claims.exp <= after + 600 + 5, `exp ${claims.exp} not ~10 minutes ahead`);
});

test('CLI token does not verify with another secret', async () => {
  const token = cliToken();
  await assert.rejects(new TokenVerifier(h.API_KEY, 'another-secret').verify(token));
  await assert.rejects(new TokenVerifier('otherkey', h.API_SECRET).verify(token));
});
