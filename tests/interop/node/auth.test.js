'use strict';
// Authentication, grants and Twirp routing, judged with the Node SDK and raw fetch.

const assert = require('node:assert/strict');
const { RoomServiceClient, AccessToken, TwirpError } = require('livekit-server-sdk');
const h = require('./harness');

const { srv, test } = h.serverSuite();
const client = (key = h.API_KEY, secret = h.API_SECRET) => new RoomServiceClient(srv().url, key, secret);
const withToken = (token) => new RoomServiceClient(srv().url, undefined, undefined, { token });

async function expectTwirp(promise, code, status) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof TwirpError, `expected a TwirpError, got ${e && e.stack}`);
    assert.equal(e.status, status, `HTTP status (code=${e.code}, message=${e.message})`);
    assert.equal(e.code, code, `Twirp code (status=${e.status}, message=${e.message})`);
    return true;
  });
}

function assertTwirpError(r, code, status) {
  assert.equal(r.status, status, h.describeResp(r));
  assert.ok(r.contentType.startsWith('application/json'), `Twirp errors are JSON: ${h.describeResp(r)}`);
  assert.ok(r.json && typeof r.json === 'object', `error body must be a JSON object: ${h.describeResp(r)}`);
  assert.equal(r.json.code, code, h.describeResp(r));
  assert.equal(typeof r.json.msg, 'string', h.describeResp(r));
  return r.json;
}

async function nodeToken(grant, identity) {
  const at = new AccessToken(h.API_KEY, h.API_SECRET, identity ? { identity } : undefined);
  at.addGrant(grant);
  return at.toJwt();
}

test('wrong secret is unauthenticated (401)', async () => {
  await expectTwirp(client(h.API_KEY, 'not-the-secret').listRooms(), 'unauthenticated', 401);
  await expectTwirp(client(h.API_KEY, 'not-the-secret').createRoom({ name: h.unique('x') }), 'unauthenticated', 401);
});

test('unknown api key is unauthenticated (401)', async () => {
  await expectTwirp(client('APIunknownkey', h.API_SECRET).listRooms(), 'unauthenticated', 401);
});

test('Node AccessToken with exact grants is accepted', async () => {
  const name = h.unique('tok');
  const created = await withToken(await nodeToken({ roomCreate: true })).createRoom({ name });
  assert.equal(created.name, name);
  const listed = await withToken(await nodeToken({ roomList: true })).listRooms([name]);
  assert.deepEqual(listed.map((r) => r.name), [name]);
  const parts = await withToken(await nodeToken({ roomAdmin: true, room: name })).listParticipants(name);
  assert.deepEqual(parts, []);
});

test('grants: createRoom/deleteRoom need roomCreate, listRooms needs roomList', async () => {
  const name = h.unique('grants');
  await client().createRoom({ name });
  await expectTwirp(withToken(await nodeToken({ roomList: true })).createRoom({ name: h.unique('g') }), 'unauthenticated', 401);
  await expectTwirp(withToken(await nodeToken({ roomAdmin: true, room: name })).deleteRoom(name), 'unauthenticated', 401);
  await expectTwirp(withToken(await nodeToken({ roomCreate: true })).listRooms(), 'unauthenticated', 401);
  assert.deepEqual((await client().listRooms([name])).map((r) => r.name), [name], 'room must survive a rejected delete');
});

test('grants: per-room calls need roomAdmin for that very room', async () => {
  const name = h.unique('admin');
  await client().createRoom({ name });
  for (const grant of [{ roomAdmin: true, room: 'other-room' }, { roomAdmin: true }, { roomJoin: true, room: name }, { roomCreate: true, roomList: true }]) {
    const c = withToken(await nodeToken(grant, grant.roomJoin ? 'someone' : undefined));
    const why = JSON.stringify(grant);
    try {
      await expectTwirp(c.listParticipants(name), 'unauthenticated', 401);
      await expectTwirp(c.getParticipant(name, 'nobody'), 'unauthenticated', 401);
      await expectTwirp(c.removeParticipant(name, 'nobody'), 'unauthenticated', 401);
      await expectTwirp(c.mutePublishedTrack(name, 'nobody', 'TR_x', true), 'unauthenticated', 401);
      await expectTwirp(c.updateParticipant(name, 'nobody', { metadata: 'm' }), 'unauthenticated', 401);
      await expectTwirp(c.updateSubscriptions(name, 'nobody', ['TR_x'], true), 'unauthenticated', 401);
      await expectTwirp(c.sendData(name, new Uint8Array([1]), 0, {}), 'unauthenticated', 401);
      await expectTwirp(c.updateRoomMetadata(name, 'hijack'), 'unauthenticated', 401);
    } catch (e) {
      e.message = `with grant ${why}: ${e.message}`;
      throw e;
    }
  }
  assert.notEqual((await client().listRooms([name]))[0].metadata, 'hijack');
});

test('raw: roomAdmin token for another room is unauthenticated', async () => {
  const name = h.unique('other');
  await client().createRoom({ name });
  const r = await h.twirp(srv().url, 'ListParticipants', { room: name }, { token: h.apiToken({ roomAdmin: true, room: 'another-room' }) });
  assertTwirpError(r, 'unauthenticated', 401);
  const ok = await h.twirp(srv().url, 'ListParticipants', { room: name }, { token: h.apiToken({ roomAdmin: true, room: name }) });
  assert.equal(ok.status, 200, h.describeResp(ok));
});

test('raw: expired token is 401 and says so', async () => {
  const now = Math.floor(Date.now() / 1000);
  const token = h.makeJwt({ iss: h.API_KEY, sub: '', nbf: now - 7200, exp: now - 3600, video: { roomList: true } }, h.API_SECRET);
  const r = await h.twirp(srv().url, 'ListRooms', {}, { token });
  const body = assertTwirpError(r, 'unauthenticated', 401);
  assert.match(body.msg, /expir/i);
});

test('raw: no Authorization header is 401', async () => {
  assertTwirpError(await h.twirp(srv().url, 'ListRooms', {}), 'unauthenticated', 401);
});

test('raw: bad signature, no exp, alg none are 401', async () => {
  const url = srv().url;
  assertTwirpError(await h.twirp(url, 'ListRooms', {}, { token: h.apiToken({ roomList: true }, { secret: 'wrong' }) }), 'unauthenticated', 401);
  assertTwirpError(await h.twirp(url, 'ListRooms', {}, { token: h.apiToken({ roomList: true }, { exp: false }) }), 'unauthenticated', 401);
  const now = Math.floor(Date.now() / 1000);
  const none = h.makeJwt({ iss: h.API_KEY, nbf: now, exp: now + 600, video: { roomList: true } }, h.API_SECRET, { alg: 'none', typ: 'JWT' });
  assertTwirpError(await h.twirp(url, 'ListRooms', {}, { token: none }), 'unauthenticated', 401);
});

test('bad_route: GET, unknown method, unknown service, wrong content type', async () => {
  const url = srv().url;
  const token = h.apiToken({ roomList: true, roomCreate: true });
  assertTwirpError(await h.twirp(url, 'ListRooms', undefined, { token, httpMethod: 'GET' }), 'bad_route', 404);
  assertTwirpError(await h.twirp(url, 'Nope', {}, { token }), 'bad_route', 404);
  assertTwirpError(await h.twirp(url, 'ListRooms', {}, { token, service: 'livekit.NoSuchService' }), 'bad_route', 404);
  assertTwirpError(await h.twirp(url, 'ListRooms', '{}', { token, contentType: 'text/plain' }), 'bad_route', 404);
});

test('JSON: snake_case keys accepted, unknown fields ignored', async () => {
  const name = h.unique('snake');
  const r = await h.twirp(
    srv().url,
    'CreateRoom',
    { name, empty_timeout: 5, max_participants: 4, metadata: 's', notAField: true, another_unknown: [1, 2] },
    { token: h.apiToken({ roomCreate: true }) },
  );
  assert.equal(r.status, 200, h.describeResp(r));
  assert.equal(r.json.name, name);
  const [room] = await client().listRooms([name]);
  assert.ok(room, 'room was not created');
  assert.equal(room.emptyTimeout, 5);
  assert.equal(room.maxParticipants, 4);
  assert.equal(room.metadata, 's');
});
