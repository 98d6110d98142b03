'use strict';
// RoomService through the real Node SDK (Twirp with camelCase JSON bodies).

const assert = require('node:assert/strict');
const { RoomServiceClient, DataPacket_Kind, TwirpError } = require('livekit-server-sdk');
const h = require('./harness');

const { srv, test } = h.serverSuite();
const client = () => new RoomServiceClient(srv().url, h.API_KEY, h.API_SECRET);

async function expectTwirp(promise, code, status, msgContains) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof TwirpError, `expected a TwirpError, got ${e && e.stack}`);
    assert.equal(e.status, status, `HTTP status (code=${e.code}, message=${e.message})`);
    assert.equal(e.code, code, `Twirp code (status=${e.status}, message=${e.message})`);
    if (msgContains) {
      assert.ok(e.message.toLowerCase().includes(msgContains.toLowerCase()), `message should mention "${msgContains}": ${e.message}`);
    }
    return true;
  });
}

const names = async (filter) => (await client().listRooms(filter)).map((r) => r.name);

test('GET / is OK', async () => {
  const res = await fetch(`${srv().url}/`);
  assert.equal(res.status, 200);
  assert.equal((await res.text()).trim(), 'OK');
});

test('createRoom returns the room', async () => {
  const name = h.unique('create');
  const before = Date.now();
  const room = await client().createRoom({ name, emptyTimeout: 600, maxParticipants: 20, metadata: 'm' });
  const after = Date.now();
  assert.match(room.sid, /^RM_.+/);
  assert.equal(room.name, name);
  assert.equal(room.emptyTimeout, 600);
  assert.equal(room.maxParticipants, 20);
  assert.equal(room.metadata, 'm');
  const ct = Number(room.creationTime);
  assert.ok(ct >= Math.floor(before / 1000) - 5 && ct <= Math.ceil(after / 1000) + 5, `creationTime ${ct}`);
  const ctMs = Number(room.creationTimeMs);
  assert.ok(ctMs >= before - 5000 && ctMs <= after + 5000, `creationTimeMs ${ctMs}`);
  assert.equal(room.numParticipants, 0);
});

test('createRoom on an existing name returns the same room', async () => {
  const name = h.unique('dup');
  const a = await client().createRoom({ name });
  const b = await client().createRoom({ name });
  assert.match(a.sid, /^RM_/);
  assert.equal(b.sid, a.sid);
  assert.deepEqual(await names([name]), [name]);
});

test('listRooms lists all and filters by names', async () => {
  const [a, b, c] = [h.unique('la'), h.unique('lb'), h.unique('lc')];
  for (const n of [a, b, c]) await client().createRoom({ name: n, metadata: `md-${n}` });
  const all = await client().listRooms();
  const byName = new Map(all.map((r) => [r.name, r]));
  for (const n of [a, b, c]) assert.ok(byName.has(n), `${n} missing from ${[...byName.keys()]}`);
  assert.equal(byName.get(a).metadata, `md-${a}`);
  assert.deepEqual((await names([a, b])).sort(), [a, b].sort());
  assert.deepEqual(await names([c]), [c]);
  assert.deepEqual(await names([h.unique('nope')]), []);
});

test('deleteRoom removes the room; deleting a missing room is not_found', async () => {
  const name = h.unique('del');
  await client().createRoom({ name });
  await client().deleteRoom(name);
  assert.ok(!(await names()).includes(name));
  await expectTwirp(client().deleteRoom(name), 'not_found', 404);
  await expectTwirp(client().deleteRoom(h.unique('missing')), 'not_found', 404);
});

test('updateRoomMetadata', async () => {
  const name = h.unique('meta');
  const created = await client().createRoom({ name, metadata: 'old' });
  const updated = await client().updateRoomMetadata(name, 'new-md');
  assert.equal(updated.name, name);
  assert.equal(updated.sid, created.sid);
  assert.equal(updated.metadata, 'new-md');
  const listed = await client().listRooms([name]);
  assert.deepEqual(listed.map((r) => r.metadata), ['new-md']);
  await expectTwirp(client().updateRoomMetadata(h.unique('missing'), 'x'), 'not_found', 404);
});

test('listParticipants: empty room and missing room', async () => {
  const name = h.unique('lp');
  await client().createRoom({ name });
  assert.deepEqual(await client().listParticipants(name), []);
  await expectTwirp(client().listParticipants(h.unique('missing')), 'not_found', 404);
});

test('participant calls for an absent identity are not_found', async () => {
  const name = h.unique('absent');
  await client().createRoom({ name });
  const c = client();
  const msg = 'participant does not exist';
  await expectTwirp(c.getParticipant(name, 'nobody'), 'not_found', 404, msg);
  await expectTwirp(c.removeParticipant(name, 'nobody'), 'not_found', 404, msg);
  await expectTwirp(c.mutePublishedTrack(name, 'nobody', 'TR_abc', true), 'not_found', 404, msg);
  await expectTwirp(c.updateParticipant(name, 'nobody', { metadata: 'x', name: 'N' }), 'not_found', 404, msg);
  await expectTwirp(c.updateSubscriptions(name, 'nobody', ['TR_abc'], true), 'not_found', 404, msg);
});

test('sendData: existing room succeeds, missing room is not_found', async () => {
  const name = h.unique('sd');
  await client().createRoom({ name });
  await client().sendData(name, new TextEncoder().encode('hello'), DataPacket_Kind.RELIABLE, { topic: 't' });
  await client().sendData(name, new Uint8Array([1, 2, 3]), DataPacket_Kind.LOSSY, { destinationIdentities: ['nobody'] });
  await expectTwirp(
    client().sendData(h.unique('missing'), new Uint8Array([1]), DataPacket_Kind.RELIABLE, {}),
    'not_found',
    404,
  );
});

test('sendData with a nonce that is not 16 bytes is invalid_argument (raw JSON)', async () => {
  const name = h.unique('nonce');
  await client().createRoom({ name });
  const token = h.apiToken({ roomAdmin: true, room: name });
  const data = Buffer.from('payload').toString('base64');
  const bad = await h.twirp(srv().url, 'SendData', { room: name, data, kind: 'RELIABLE', nonce: Buffer.from('short').toString('base64') }, { token });
  assert.equal(bad.status, 400, h.describeResp(bad));
  assert.equal(bad.json?.code, 'invalid_argument', h.describeResp(bad));
  const good = await h.twirp(srv().url, 'SendData', { room: name, data, kind: 'RELIABLE', nonce: Buffer.alloc(16, 7).toString('base64') }, { token });
  assert.equal(good.status, 200, h.describeResp(good));
});

test('a room with emptyTimeout=1 and nobody in it goes away', async () => {
  const short = h.unique('short');
  const long = h.unique('long');
  await client().createRoom({ name: long, emptyTimeout: 300 });
  await client().createRoom({ name: short, emptyTimeout: 1 });
  assert.deepEqual(await names([short]), [short], 'room must exist right after creation');
  const deadline = Date.now() + 15000;
  let gone = false;
  while (Date.now() < deadline) {
    if ((await names([short])).length === 0) {
      gone = true;
      break;
    }
    await h.sleep(250);
  }
  assert.ok(gone, 'room with emptyTimeout=1 still listed after 15 s');
  assert.deepEqual(await names([long]), [long], 'a room whose timeout has not elapsed must stay');
});
