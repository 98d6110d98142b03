// LiveKit data tracks with livekit-client in headless Chromium, in both signalling modes
// (livekit-client's default single peer connection on /rtc/v1, and
// `new Room({singlePeerConnection: false})` on /rtc):
//   1. page A publishes a data track "sensor"; page B sees it published by alice, subscribes,
//      and receives every frame A pushes 20 ms apart (50 small ones, and four of 20-40 KB that
//      livekit-client splits into several packets), each payload byte for byte and with its
//      user timestamp; a second "sensor" from A is refused with DuplicateName and the first
//      keeps working; when A unpublishes it, B sees it go and its frame stream ends;
//   2. a participant whose token lacks canPublishData is refused with NotAllowed.
// The data-track channel is unordered and unreliable, but nothing is lost inside the namespace:
// every frame must arrive (order is not checked). Every wait has a deadline; a failure prints
// the server's data-track lines since the test began, then the server log, the browser console
// and the pages' events.

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

/** What page A pushes, in order: the small frames, with a large one after every 12th. */
function framePlan() {
  const plan = [];
  for (let i = 0; i < SMALL_FRAMES; i++) {
    plan.push({ index: i, size: 8 + ((i * 13) % 57) });
    const k = (i + 1) / 12 - 1; // after small frames 11, 23, 35, 47
    if (Number.isInteger(k) && k < LARGE_SIZES.length) plan.push({ index: SMALL_FRAMES + k, size: LARGE_SIZES[k] });
  }
  return plan;
}

// Not root: skip (no namespaces). Root but something missing: fail, as the other browser tests.
const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let mark = 0;
let startedAt = new Date();

/** Runs a test body; on failure adds what the server logged about data tracks meanwhile, the
 * server log, the browser console and the pages' output. */
async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  startedAt = new Date();
  try {
    await fn();
  } catch (e) {
    const diag = env ? env.diagnostics() : '';
    const decided = env ? env.serverLinesSince(startedAt, /data.?track|DataTrack|publish_data|unpublish_data|data_subscription/i, 25) : [];
    const lines = `--- the server's data-track lines since ${startedAt.toISOString()} (last ${decided.length}) ---\n${decided.join('\n')}`;
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

function waitPageEvent(page, event, match, timeout = 20000) {
  return browser.waitFor(
    (e) => e.page === page && e.event === event && Object.entries(match).every(([k, v]) => e[k] === v),
    { timeout, after: mark, what: `${event} ${JSON.stringify(match)} on page ${page}`, failOn: ['fatal', 'page_crash'] },
  );
}

/** Publishes data track `name` on `page`; livekit-client gives up after 10 s without an answer. */
function publishDataTrack(page, name) {
  return browser.call(page, 'publishDataTrack', [name], 20000);
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
          const sub = await browser.call('B', 'subscribeDataTrack', [pub.sid]);
          assert.ok(!sub.error, `page B could not subscribe: ${JSON.stringify(sub)}`);
          const active = await browser.pollUntil('B', 'dataTrackReceived', [pub.sid], (r) => r.subscription === 'active' || r.error !== null,
            { timeout: 15000, interval: 100 });
          assert.ok(active.ok && active.value.subscription === 'active',
            `page B's subscription to "sensor" never became active: ${JSON.stringify({ ...active.value, frames: active.value.frames.length })}`);

          // A second "sensor" from alice is refused as a duplicate, and nobody is told of it.
          const dup = await publishDataTrack('A', 'sensor');
          assert.equal(dup.reasonName, 'DuplicateName', `a second "sensor": ${JSON.stringify(dup)}`);
          assert.equal(dup.error, 'DataTrackPublishError');

          // The first one still works: every frame arrives, byte for byte, with its timestamp.
          const plan = framePlan();
          const pushed = await browser.call('A', 'pushDataFrames', ['sensor', plan, FRAME_INTERVAL_MS], 60000);
          assert.deepEqual(pushed.failed, [], `page A could not push: ${JSON.stringify(pushed.failed)}`);
          assert.equal(pushed.sent.length, plan.length);
          const got = await browser.pollUntil('B', 'dataTrackReceived', [pub.sid],
            (r) => r.error !== null || new Set(r.frames.map((f) => f.index)).size >= plan.length, { timeout: 15000, interval: 250 });
          const frames = got.value.frames;
          const missing = pushed.sent.filter((s) => !frames.some((f) => f.index === s.index)).map((s) => `${s.index} (${s.size} B)`);
          assert.equal(got.value.error, null, `page B's frame stream failed: ${got.value.error}`);
          assert.deepEqual(missing, [], `page B is missing ${missing.length} of ${plan.length} frames (received ${frames.length})`);
          const byIndex = new Map(frames.map((f) => [f.index, f]));
          for (const s of pushed.sent) {
            const f = byIndex.get(s.index);
            assert.equal(f.size, s.size, `frame ${s.index}: ${f.size} bytes received, ${s.size} sent`);
            assert.equal(f.sha256, s.sha256, `frame ${s.index} (${s.size} B): the payload differs from what page A pushed`);
            assert.equal(f.userTimestamp, String(1e12 + s.index), `frame ${s.index}: user timestamp`);
          }
          assert.equal(frames.length, plan.length, `page B received ${frames.length} frames for ${plan.length} pushed: ${JSON.stringify(frames.map((f) => f.index))}`);
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
    });
  }
});
