// LiveKit data tracks with livekit-client in headless Chromium, in both signalling modes
// (livekit-client's default single peer connection on /rtc/v1, and
// `new Room({singlePeerConnection: false})` on /rtc):
//   1. page A publishes a data track "sensor"; page B sees it published by alice, subscribes,
//      and receives every frame A pushes 20 ms apart (50 small ones, and four of 20-40 KB that
//      livekit-client splits into several packets), each payload byte for byte and with its
//      user timestamp; a second "sensor" from A is refused with DuplicateName and the first
//      keeps working; when A unpublishes it, B sees it go and its frame stream ends;
//   2. a participant whose token lacks canPublishData is refused with NotAllowed;
//   3. page A's signal connection drops and A resumes (the 'node-failure' scenario): the track
//      keeps its sid, B is told nothing, and every frame A pushes afterwards reaches B;
//   4. the same with B resuming: its subscription carries on;
//   5. A reconnects fully ('leave-full-reconnect', a new participant): livekit-client publishes
//      its data tracks again, each under a new sid; B sees the old sid go (its stream ends) and
//      the new one published by alice, subscribes, and receives every frame.
// The data-track channel is unordered and unreliable, but nothing is lost inside the namespace:
// every frame must arrive (order is not checked). Every wait has a deadline; a failure prints
// the server's data-track, join, resume and leave lines since the test began, then the server
// log, the browser console and the pages' events.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { WS_URL, browserSuite, prerequisites, unique } from './harness.mjs';

const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {} },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false } },
];

const FRAME_INTERVAL_MS = 20;
const SMALL_FRAMES = 50; // indices 0..49, 8 to 64 bytes
const LARGE_SIZES = [20000, 26000, 33000, 40000]; // indices 50..53; livekit-client's packets carry at most 16000 bytes

/** What page A pushes, in order: `small` small frames (indices `first`...), with a large one
 * (the next indices) after every 12th. */
function framePlan(first = 0, small = SMALL_FRAMES, large = LARGE_SIZES) {
  const plan = [];
  for (let i = 0; i < small; i++) {
    plan.push({ index: first + i, size: 8 + ((i * 13) % 57) });
    const k = (i + 1) / 12 - 1; // after small frames 11, 23, 35, 47
    if (Number.isInteger(k) && k < large.length) plan.push({ index: first + small + k, size: large[k] });
  }
  return plan;
}

/** A shorter plan for the reconnection tests: 24 small frames and two large ones. */
const shortPlan = (first) => framePlan(first, 24, [20000, 33000]);

// Not root: skip (no namespaces). Root but something missing: fail, as the other browser tests.
const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let mark = 0;
let startedAt = new Date();

/** Runs a test body; on failure adds what the server logged about data tracks, joins, resumes
 * and leaves meanwhile, the server log, the browser console and the pages' output. */
async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  startedAt = new Date();
  try {
    await fn();
  } catch (e) {
    const diag = env ? env.diagnostics() : '';
    const decided = env
      ? env.serverLinesSince(startedAt, /data.?track|DataTrack|publish_data|unpublish_data|data_subscription|participant (joined|resumed|left)|simulating a scenario/i, 30)
      : [];
    const lines = `--- the server's data-track, join, resume and leave lines since ${startedAt.toISOString()} (last ${decided.length}) ---\n${decided.join('\n')}`;
    if (e && typeof e === 'object') {
      const [head, ...rest] = e.message.split('\n');
      e.message = `${head}\n${lines}\n${rest.join('\n')}\n\n${diag}`;
      throw e;
    }
    throw new Error(`${e}\n${lines}\n\n${diag}`);
  }
}

async function connectPage(page, identity, room, mode, grants = {}) {
  await browser.open(page);
  const tok = await env.token(identity, room, grants);
  const info = await browser.call(page, 'connect', [WS_URL, tok, mode.roomOptions], 30000);
  assert.equal(info.identity, identity, `page ${page} connected as ${JSON.stringify(info)}`);
  assert.match(info.sid, /^PA_/, `page ${page}: participant sid ${info.sid}`);
  return info;
}

async function closePages(...pages) {
  for (const p of pages) {
    await browser.call(p, 'disconnect', [], 10000).catch(() => {});
    await browser.command('close', { page: p }, 15000);
  }
}

function waitPageEvent(page, event, match, timeout = 20000, after = mark) {
  return browser.waitFor(
    (e) => e.page === page && e.event === event && Object.entries(match).every(([k, v]) => e[k] === v),
    { timeout, after, what: `${event} ${JSON.stringify(match)} on page ${page}`, failOn: ['fatal', 'page_crash'] },
  );
}

/** Publishes data track `name` on `page`; livekit-client gives up after 10 s without an answer. */
function publishDataTrack(page, name) {
  return browser.call(page, 'publishDataTrack', [name], 20000);
}

/** Page B subscribes to data track `sid`, and the subscription becomes active (livekit-client
 * delivers frames once the server has given it its handle). */
async function subscribeActive(sid) {
  const sub = await browser.call('B', 'subscribeDataTrack', [sid]);
  assert.ok(!sub.error, `page B could not subscribe to ${sid}: ${JSON.stringify(sub)}`);
  const active = await browser.pollUntil('B', 'dataTrackReceived', [sid], (r) => r.subscription === 'active' || r.error !== null,
    { timeout: 15000, interval: 100 });
  assert.ok(active.ok && active.value.subscription === 'active',
    `page B's subscription to ${sid} never became active: ${JSON.stringify({ ...active.value, frames: active.value.frames.length })}`);
}

/** Page A pushes `plan` on its data track "sensor", 20 ms apart; returns what it pushed. */
async function pushFrames(plan) {
  const pushed = await browser.call('A', 'pushDataFrames', ['sensor', plan, FRAME_INTERVAL_MS], 60000);
  assert.deepEqual(pushed.failed, [], `page A could not push: ${JSON.stringify(pushed.failed)}`);
  assert.equal(pushed.sent.length, plan.length);
  return pushed.sent;
}

/** Page B's subscription to `sid` receives every frame of `sent` exactly once, byte for byte,
 * with its user timestamp. */
async function receivesAll(sid, sent, what = 'frames') {
  const want = new Set(sent.map((s) => s.index));
  const ofBatch = (r) => r.frames.filter((f) => want.has(f.index));
  const got = await browser.pollUntil('B', 'dataTrackReceived', [sid],
    (r) => r.error !== null || new Set(ofBatch(r).map((f) => f.index)).size >= want.size, { timeout: 15000, interval: 250 });
  const frames = ofBatch(got.value);
  const missing = sent.filter((s) => !frames.some((f) => f.index === s.index)).map((s) => `${s.index} (${s.size} B)`);
  assert.equal(got.value.error, null, `page B's frame stream of ${sid} failed: ${got.value.error}`);
  assert.deepEqual(missing, [], `${what}: page B is missing ${missing.length} of ${sent.length} frames on ${sid} (received ${frames.length}; subscription ${got.value.subscription}, ended ${got.value.ended})`);
  const byIndex = new Map(frames.map((f) => [f.index, f]));
  for (const s of sent) {
    const f = byIndex.get(s.index);
    assert.equal(f.size, s.size, `${what}: frame ${s.index}: ${f.size} bytes received, ${s.size} sent`);
    assert.equal(f.sha256, s.sha256, `${what}: frame ${s.index} (${s.size} B): the payload differs from what page A pushed`);
    assert.equal(f.userTimestamp, String(1e12 + s.index), `${what}: frame ${s.index}: user timestamp`);
  }
  assert.equal(frames.length, sent.length, `${what}: page B received ${frames.length} frames for ${sent.length} pushed: ${JSON.stringify(frames.map((f) => f.index))}`);
}

/** Pages A (alice) and B (bob) in a new room; A publishes "sensor", B subscribes to it and
 * receives a first batch of frames. */
async function sensorPair(mode, prefix) {
  const room = unique(prefix);
  const a = await connectPage('A', 'alice', room, mode);
  const b = await connectPage('B', 'bob', room, mode);
  const pub = await publishDataTrack('A', 'sensor');
  assert.ok(pub.sid && !pub.error, `page A could not publish data track "sensor": ${JSON.stringify(pub)}`);
  await waitPageEvent('B', 'data_track_published', { sid: pub.sid, participant: 'alice' }, 15000);
  await subscribeActive(pub.sid);
  await receivesAll(pub.sid, await pushFrames(shortPlan(0)), 'before any reconnection');
  return { a, b, sid: pub.sid };
}

/** Page `page` resumes its session after the server closed its signal connection (LiveKit's
 * 'node-failure' scenario), as the same participant; returns the event index it began at. */
async function resumes(page, info) {
  const at = browser.events.length;
  await browser.call(page, 'simulate', ['node-failure'], 10000);
  await waitPageEvent(page, 'reconnected', {}, 30000, at);
  const me = await browser.call(page, 'me', []);
  assert.equal(me.sid, info.sid, `page ${page} resumed as another participant`);
  return at;
}

/** After a resume that began at event `at`: nobody left, page B was told of no data track
 * coming or going, A's "sensor" keeps `sid`, B's subscription is still active, and every frame A
 * pushes now reaches B. */
async function carriesOn(sid, at, who) {
  const what = `after page ${who} resumed`;
  const noise = () => browser.events.slice(at).filter((e) =>
    ['participant_disconnected', 'disconnected', 'data_track_unpublished', 'data_track_published', 'local_data_track_unpublished'].includes(e.event));
  assert.deepEqual(noise(), [], `${what}: unexpected events`);
  const local = await browser.call('A', 'localDataTrack', ['sensor']);
  assert.deepEqual(local, { sid, published: true, state: 'published' }, `${what}: page A's "sensor"`);
  const before = await browser.call('B', 'dataTrackReceived', [sid]);
  assert.ok(before.subscription === 'active' && !before.ended && before.error === null,
    `${what}: page B's subscription: ${JSON.stringify({ ...before, frames: before.frames.length })}`);
  await receivesAll(sid, await pushFrames(shortPlan(1000)), what);
  assert.deepEqual(noise(), [], `${what}: unexpected events while the frames went`);
}

if (why && !notRoot) {
  it('the browser data-track tests can run here', () => assert.fail(`cannot run the browser tests: ${why}`));
}

describe('LiveKit data tracks with livekit-client', { skip: why || false }, () => {
  browserSuite((e, b) => {
    env = e;
    browser = b;
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      it('page B receives every frame of page A\'s data track byte for byte; a duplicate name is refused; unpublishing reaches B', { timeout: 120000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-dt');
          await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);

          // Alice publishes "sensor"; Bob's room announces it as hers.
          const pub = await publishDataTrack('A', 'sensor');
          assert.ok(!pub.error, `page A could not publish data track "sensor": ${JSON.stringify(pub)}`);
          assert.equal(pub.name, 'sensor');
          assert.ok(pub.sid, `data track without sid: ${JSON.stringify(pub)}`);
          const seen = await waitPageEvent('B', 'data_track_published', { sid: pub.sid }, 15000);
          assert.equal(seen.name, 'sensor');
          assert.equal(seen.participant, 'alice');

          // Bob subscribes; livekit-client delivers frames once the server has given the
          // subscription its handle.
          await subscribeActive(pub.sid);

          // A second "sensor" from alice is refused as a duplicate, and nobody is told of it.
          const dup = await publishDataTrack('A', 'sensor');
          assert.equal(dup.reasonName, 'DuplicateName', `a second "sensor": ${JSON.stringify(dup)}`);
          assert.equal(dup.error, 'DataTrackPublishError');

          // The first one still works: every frame arrives, byte for byte, with its timestamp.
          await receivesAll(pub.sid, await pushFrames(framePlan()));
          const all = await browser.call('B', 'dataTrackReceived', [pub.sid]);
          assert.equal(all.frames.length, framePlan().length, `page B received frames that were never pushed: ${JSON.stringify(all.frames.map((f) => f.index))}`);
          const announced = browser.events.slice(mark).filter((e) => e.page === 'B' && e.event === 'data_track_published');
          assert.deepEqual(announced.map((e) => e.sid), [pub.sid], `page B was told of other data tracks: ${JSON.stringify(announced)}`);

          // Alice unpublishes: Bob sees that sid go, and his frame stream ends.
          const unpub = await browser.call('A', 'unpublishDataTrack', ['sensor'], 20000);
          assert.equal(unpub.sid, pub.sid);
          assert.equal(unpub.published, false);
          await waitPageEvent('B', 'data_track_unpublished', { sid: pub.sid }, 15000);
          const ended = await browser.pollUntil('B', 'dataTrackReceived', [pub.sid], (r) => r.ended || r.error !== null, { timeout: 10000, interval: 100 });
          assert.ok(ended.ok && ended.value.ended, `page B's frame stream did not end: ${JSON.stringify({ ...ended.value, frames: ended.value.frames.length })}`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('a participant without canPublishData is refused a data track with NotAllowed', { timeout: 60000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-dt-deny');
          await connectPage('C', 'carol', room, mode, { canPublishData: false });
          const res = await publishDataTrack('C', 'sensor');
          assert.equal(res.reasonName, 'NotAllowed', `publishDataTrack without canPublishData: ${JSON.stringify(res)}`);
          assert.equal(res.error, 'DataTrackPublishError');
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('C');
        }));

      it('after the publisher resumes, its data track keeps its sid and every frame still reaches the subscriber', { timeout: 90000 }, () =>
        withDiagnostics(async () => {
          const { a, sid } = await sensorPair(mode, 'lkb-dt-resume-pub');
          const at = await resumes('A', a);
          await carriesOn(sid, at, 'A');
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('after the subscriber resumes, its data-track subscription carries on', { timeout: 90000 }, () =>
        withDiagnostics(async () => {
          const { b, sid } = await sensorPair(mode, 'lkb-dt-resume-sub');
          const at = await resumes('B', b);
          await carriesOn(sid, at, 'B');
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      // A full reconnection is a new participant: livekit-client's OutgoingDataTrackManager
      // publishes each of its data tracks again (same name and handle) once the engine has
      // restarted, and the LocalDataTrack takes the new sid. The subscriber sees the old
      // participant leave, taking its track along, and the new one publish "sensor".
      it('after the publisher reconnects fully, its data track is published again and the subscriber receives it', { timeout: 90000 }, () =>
        withDiagnostics(async () => {
          const { a, sid } = await sensorPair(mode, 'lkb-dt-full');
          const at = browser.events.length;
          await browser.call('A', 'simulate', ['leave-full-reconnect'], 10000);
          await waitPageEvent('A', 'reconnected', {}, 30000, at);
          const again = await browser.call('A', 'me', []);
          assert.notEqual(again.sid, a.sid, 'a full reconnection is a new participant');

          // Page A's "sensor" is published again, under a new sid.
          const local = await browser.pollUntil('A', 'localDataTrack', ['sensor'], (t) => t.state === 'published' && t.sid !== sid,
            { timeout: 15000, interval: 100 });
          assert.ok(local.ok, `page A's "sensor" was not published again after its full reconnection: ${JSON.stringify(local.value)} (sid before: ${sid})`);
          const newSid = local.value.sid;
          assert.ok(newSid, `page A's republished "sensor" has no sid: ${JSON.stringify(local.value)}`);

          // Page B: the old track goes with the old participant (its stream ends), the new
          // participant publishes "sensor", and B receives all of it.
          await waitPageEvent('B', 'data_track_unpublished', { sid }, 15000, at);
          const ended = await browser.pollUntil('B', 'dataTrackReceived', [sid], (r) => r.ended || r.error !== null, { timeout: 10000, interval: 100 });
          assert.ok(ended.ok && ended.value.ended, `page B's frame stream of the old sid did not end: ${JSON.stringify({ ...ended.value, frames: ended.value.frames.length })}`);
          const seen = await waitPageEvent('B', 'data_track_published', { sid: newSid }, 15000, at);
          assert.equal(seen.participant, 'alice');
          assert.equal(seen.name, 'sensor');
          await subscribeActive(newSid);
          await receivesAll(newSid, await pushFrames(shortPlan(1000)), 'after page A reconnected fully');
          const announced = browser.events.slice(at).filter((e) => e.page === 'B' && e.event === 'data_track_published');
          assert.deepEqual(announced.map((e) => e.sid), [newSid], `page B was told of other data tracks: ${JSON.stringify(announced)}`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));
    });
  }
});
