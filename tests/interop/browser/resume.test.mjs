// Resume with livekit-client in headless Chromium, in both signalling modes: the signal
// connection is cut (ss -K inside the namespace), and then the whole network goes away for
// 18 s (nftables drop, longer than the 15 s ping timeout). Each time the pages report
// reconnecting and reconnected, keep their participant SIDs, never see each other leave, and
// page B hears and decodes page A again (within 2 s of the network returning, for the outage,
// and its video is never paused for the outage's loss).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { API_KEY, BrowserEnv, PORT, WS_URL, prerequisites, sleep, unique } from './harness.mjs';

const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {} },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false } },
];

const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let mark = 0;
/** When the test's current phase (its start, the outage) began: the server's log lines since
 * are printed first when it fails. */
let phaseAt = new Date();

function inNs(cmd, input) {
  const argv = env.ns.argv(cmd);
  const cp = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input, timeout: 10000 });
  assert.equal(cp.status, 0, `${cmd.join(' ')}: ${cp.stderr}`);
}

async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  phaseAt = new Date();
  try {
    await fn();
  } catch (e) {
    const diag = env ? env.diagnostics() : '';
    if (e && typeof e === 'object') {
      // what the server decided since the phase began, first: CI may show only the first
      // lines of a failure
      const decided = env ? env.serverLinesSince(phaseAt, /heard again|ICE restart|moved to a new|pauses|resumes|backed off|connection lost|resumed|allocation/, 15) : [];
      const [head, ...rest] = e.message.split('\n');
      e.message = `${head}\n--- the server since ${phaseAt.toISOString()} (last ${decided.length}) ---\n${decided.join('\n')}\n${rest.join('\n')}\n\n${diag}`;
      throw e;
    }
    throw new Error(`${e}\n\n${diag}`);
  }
}

function waitPageEvent(page, event, match = {}, timeout = 20000, after = mark) {
  return browser.waitFor(
    (e) => e.page === page && e.event === event && Object.entries(match).every(([k, v]) => e[k] === v),
    { timeout, after, what: `${event} ${JSON.stringify(match)} on page ${page}`, failOn: ['fatal', 'page_crash'] },
  );
}

async function connectPage(page, identity, room, mode) {
  await browser.open(page);
  const tok = await env.token(identity, room);
  const info = await browser.call(page, 'connect', [WS_URL, tok, mode.roomOptions], 30000);
  assert.match(info.sid, /^PA_/);
  return info;
}

/** Page B decodes `n` new frames of alice's video within `timeout`; returns the stats
 * polled meanwhile (time since `since`, frames decoded / received / dropped, packets received
 * and lost, keyframes, PLIs, NACKs, SSRC, width, and
 * each peer connection's ICE candidate pairs: checks received / answered, sent / answered,
 * ms since the pair last received). */
async function decodes(n, timeout, since = Date.now()) {
  const trail = [];
  const vs = await browser.pollUntil('B', 'videoStats', ['alice', { ice: true }], (v, h) => {
    trail.push(v.error ? `${Date.now() - since}ms ${v.error}`
      : `${Date.now() - since}ms f${v.framesDecoded}/r${v.framesReceived}/d${v.framesDropped} p${v.packetsReceived} l${v.packetsLost} k${v.keyFramesDecoded} pli${v.pliCount} nack${v.nackCount} ssrc${v.ssrc} ${v.frameWidth}w [${(v.pairs || []).join(' || ')}]`);
    const first = h.find((x) => !x.error) || {};
    return !v.error && (v.framesDecoded || 0) - (first.framesDecoded || 0) >= n;
  }, { timeout, interval: 100 });
  assert.ok(vs.ok, `page B did not decode ${n} new frames: ${JSON.stringify(vs.value)}`);
  return trail;
}

/** Page B receives `n` new audio packets from alice within `timeout`. */
async function hears(n, timeout) {
  const as = await browser.pollUntil('B', 'audioStats', ['alice'], (x, h) => {
    const first = h.find((y) => !y.error) || {};
    return !x.error && (x.packetsReceived || 0) - (first.packetsReceived || 0) >= n;
  }, { timeout, interval: 100 });
  assert.ok(as.ok, `page B received no new audio: ${JSON.stringify(as.value)}`);
}

/** UpdateParticipant with the Python `livekit-api` SDK (from inside the namespace). */
function updateParticipant(room, identity, metadata, permission) {
  const out = env.livekitApi([
    'p = await lk.room.update_participant(api.UpdateParticipantRequest(room=a["room"], identity=a["identity"],',
    '    metadata=a["metadata"], permission=api.ParticipantPermission(**a["permission"])))',
    'print(p.metadata)',
  ], { room, identity, metadata, permission });
  assert.equal(out, metadata, `UpdateParticipant ${identity}`);
}

function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

if (why && !notRoot) {
  it('the browser resume tests can run here', () => assert.fail(`cannot run the browser tests: ${why}`));
}

describe('livekit-client resumes its session', { skip: why || false }, () => {
  before(async () => {
    env = new BrowserEnv();
    process.once('exit', () => env && env.stopSync());
    await env.start();
    browser = await env.browser('chromium');
  }, { timeout: 90000 });

  after(async () => {
    const keepDir = process.env.LK_BROWSER_KEEP_LOGS === '1';
    if (keepDir && env) console.log(`# logs kept in ${env.dir}`);
    if (env) await env.cleanup({ keepDir });
  });

  for (const mode of MODES) {
    it(`${mode.name}: after a cut signal connection and after an 18 s outage`, { timeout: 180000 }, () =>
      withDiagnostics(async () => {
        const room = unique('lkb-resume');
        const a = await connectPage('A', 'alice', room, mode);
        const b = await connectPage('B', 'bob', room, mode);
        await browser.call('A', 'publishCameraAndMicrophone', [], 30000);
        await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' });
        await decodes(20, 25000);

        // 1. The signal connection is cut; media is untouched.
        const cut = browser.events.length;
        inNs(['ss', '-K', 'dport', '=', `:${PORT}`]);
        for (const p of ['A', 'B']) await waitPageEvent(p, 'reconnected', {}, 30000, cut);
        const beforeOutage = (await decodes(20, 15000)).at(-1);

        // 2. Everything is dropped for 18 s.
        const outage = browser.events.length;
        phaseAt = new Date();
        inNs(['nft', '-f', '-'], 'table inet outage {\n chain out {\n  type filter hook output priority 0;\n  meta l4proto {tcp, udp} drop\n }\n}\n');
        await sleep(18000);
        inNs(['nft', '-f', '-'], 'delete table inet outage\n');
        const restored = Date.now();
        // Media flows again at once: the transports were kept, and the server has been
        // checking both pages' silent paths every 500 ms, so Chromium's ICE finds them alive
        // as soon as a check gets through instead of waiting for its own backed-off checks
        // or the ICE restart that follows the SDK's signal reconnection (its own retry
        // schedule). Before the server checked silent peers: audio 1.2-2.1 s, video 1.6-5.2 s.
        await hears(5, 10000);
        const audioBack = (Date.now() - restored) / 1000;
        const trail = await decodes(3, 10000, restored);
        const videoBack = (Date.now() - restored) / 1000;
        console.log(`# ${mode.name}: audio back after ${audioBack.toFixed(2)} s, video after ${videoBack.toFixed(2)} s`);
        assert.ok(audioBack <= 2, `audio received again ${audioBack.toFixed(2)} s after the network returned`);
        if (videoBack > 2) {
          const pairsA = await browser.call('A', 'icePairs', []).catch((e) => [String(e)]);
          assert.fail(`video decoded again ${videoBack.toFixed(2)} s after the network returned; page B's video before the outage: ${beforeOutage}; since the network returned: ${trail.join(', ')}; page A's ICE now: ${pairsA.join(' || ')}`);
        }
        for (const p of ['A', 'B']) await waitPageEvent(p, 'reconnected', {}, 30000, outage);
        await decodes(20, 15000);
        // The loss the first reports after the outage count (everything sent into it) is
        // the outage's, not congestion: the server never paused page B's video for it.
        const paused = browser.events.slice(outage).filter((e) => e.page === 'B' && e.event === 'track_stream_state' && e.state === 'paused');
        assert.deepEqual(paused, [], `page B's video was paused after the outage: ${JSON.stringify(paused)}`);

        // Same participants, same SIDs, and nobody saw anybody leave.
        const left = browser.events.slice(cut).filter((e) => e.event === 'participant_disconnected');
        assert.deepEqual(left, [], `a page saw a leave: ${JSON.stringify(left)}`);
        for (const [page, info, other] of [['A', a, b], ['B', b, a]]) {
          const s = await browser.call(page, 'state', []);
          assert.equal(s.sid, info.sid, `page ${page} changed SID`);
          assert.deepEqual(s.remote.map((r) => r.sid), [other.sid], `page ${page} sees ${JSON.stringify(s.remote)}`);
        }
        assert.ok(browser.events.slice(cut).some((e) => e.event === 'reconnecting' || e.event === 'signal_reconnecting'));
        assert.ok(env.serverAlive(), 'livekit-server exited');
        for (const p of ['A', 'B']) {
          await browser.call(p, 'disconnect', [], 10000).catch(() => {});
          await browser.command('close', { page: p }, 15000);
        }
      }));

    // Scenarios livekit-client asks the server to play on it (`room.simulateScenario`), played
    // as LiveKit plays them: a speaker update, a node failure and a migration (the signal
    // connection closes without a leave and the client resumes), a leave asking for a full
    // reconnection, and a server leave.
    it(`${mode.name}: the scenarios livekit-client asks the server to simulate`, { timeout: 150000 }, () =>
      withDiagnostics(async () => {
        const room = unique('lkb-sim');
        const a = await connectPage('A', 'alice', room, mode);
        await connectPage('B', 'bob', room, mode);
        await waitPageEvent('B', 'participant_connected', { participant: 'alice' }).catch(() => {});
        const next = (ev) => browser.events.indexOf(ev) + 1;
        const speaking = (e) => e.speakers.some((x) => x.identity === 'alice');
        // Page A is still the participant it joined as, and no page saw a departure since `at`.
        const resumedAsBefore = async (scenario, at) => {
          const me = await browser.call('A', 'me', []);
          assert.equal(me.sid, a.sid, `${scenario}: page A resumed as another participant`);
          const left = browser.events.slice(at).filter((e) =>
            (e.page === 'B' && e.event === 'participant_disconnected') || (e.page === 'A' && e.event === 'disconnected'));
          assert.deepEqual(left, [], `${scenario}: a page saw a departure`);
        };

        // Alice publishes no audio; page B is told she speaks, then, 3 s later, that she stopped.
        let at = browser.events.length;
        await browser.call('A', 'simulate', ['speaker'], 10000);
        const on = await browser.waitFor((e) => e.page === 'B' && e.event === 'active_speakers' && speaking(e),
          { timeout: 10000, after: at, what: 'page B seeing alice speak' });
        await browser.waitFor((e) => e.page === 'B' && e.event === 'active_speakers' && !speaking(e),
          { timeout: 10000, after: next(on), what: 'page B seeing alice stop speaking' });

        // A node failure and a migration: page A resumes as the same participant, and page B
        // never sees her leave.
        for (const scenario of ['node-failure', 'migration']) {
          at = browser.events.length;
          await browser.call('A', 'simulate', [scenario], 10000);
          await waitPageEvent('A', 'reconnected', {}, 30000, at);
          await resumedAsBefore(scenario, at);
        }

        // A resume whose new signal connection the server closes, after the resume's messages
        // or before any: page A opens another and resumes again (two signal connections for
        // the one resume livekit-client starts), and stays the same participant.
        for (const scenario of ['disconnect-signal-on-resume', 'disconnect-signal-on-resume-no-messages']) {
          at = browser.events.length;
          const opened = await browser.call('A', 'webSocketsOpened', []);
          await browser.call('A', 'simulate', [scenario], 10000);
          await waitPageEvent('A', 'reconnected', {}, 30000, at);
          const twice = await browser.pollUntil('A', 'webSocketsOpened', [], (n) => n >= opened + 2, { timeout: 15000, interval: 200 });
          assert.ok(twice.ok, `${scenario}: page A opened ${twice.value - opened} signal connection(s) to resume, not 2`);
          await waitPageEvent('A', 'connection_state', { state: 'connected' }, 15000, at);
          await resumedAsBefore(scenario, at);
        }

        // A leave asking for a full reconnection: page A joins afresh, page B sees the new alice.
        at = browser.events.length;
        await browser.call('A', 'simulate', ['leave-full-reconnect'], 10000);
        await waitPageEvent('A', 'reconnected', {}, 30000, at);
        const again = await browser.call('A', 'me', []);
        assert.notEqual(again.sid, a.sid, 'a full reconnection is a new participant');
        await browser.waitFor((e) => e.page === 'B' && e.event === 'participant_connected' && e.participant === 'alice' && e.sid === again.sid,
          { timeout: 15000, after: at, what: 'page B seeing alice join again' });

        // A server leave: page A is disconnected with SERVER_SHUTDOWN and page B sees her go.
        at = browser.events.length;
        await browser.call('A', 'simulate', ['server-leave'], 10000);
        const gone = await waitPageEvent('A', 'disconnected', {}, 15000, at);
        assert.equal(gone.reason, 3, `page A's disconnect reason (DisconnectReason.SERVER_SHUTDOWN is 3): ${JSON.stringify(gone)}`);
        await waitPageEvent('B', 'participant_disconnected', { participant: 'alice' }, 15000, at);
        assert.ok(env.serverAlive(), 'livekit-server exited');
        for (const p of ['A', 'B']) {
          await browser.call(p, 'disconnect', [], 10000).catch(() => {});
          await browser.command('close', { page: p }, 15000);
        }
      }));

    // The server hands each participant tokens of its current grants (`refresh_token`): at
    // its join and when the API changes it. Joining afresh long after the token it connected
    // with expired, livekit-client uses the latest one and keeps what the API granted.
    it(`${mode.name}: a full reconnection after its token expired joins with the refreshed token`, { timeout: 120000 }, () =>
      withDiagnostics(async () => {
        const room = unique('lkb-refresh');
        await browser.open('A');
        const tok = await env.token('alice', room, {}, '8s');
        const original = jwtClaims(tok);
        const info = await browser.call('A', 'connect', [WS_URL, tok, mode.roomOptions], 30000);
        // Refreshed at the join: valid ten minutes, signed with the node's key.
        const first = await browser.pollUntil('A', 'tokenClaims', [], (c) => c && c.exp - c.nbf === 600, { timeout: 10000, interval: 100 });
        assert.ok(first.ok, `page A was handed no refreshed token: ${JSON.stringify(first.value)} (its own: ${JSON.stringify(original)})`);
        assert.equal(first.value.iss, API_KEY);
        assert.equal(first.value.sub, 'alice');
        assert.equal(first.value.video.room, room);
        // The API takes publishing away and sets metadata: the next token carries both.
        updateParticipant(room, 'alice', 'granted', { can_subscribe: true, can_publish: false, can_publish_data: true });
        const changed = await browser.pollUntil('A', 'tokenClaims', [], (c) => c && c.metadata === 'granted' && c.video.canPublish === false,
          { timeout: 10000, interval: 100 });
        assert.ok(changed.ok, `page A's token did not follow UpdateParticipant: ${JSON.stringify(changed.value)}`);
        // Once the token it connected with has expired, livekit-client joins afresh.
        while (Date.now() < original.exp * 1000 + 1500) await sleep(250);
        const restart = browser.events.length;
        await browser.call('A', 'fullReconnect', [], 30000);
        await waitPageEvent('A', 'reconnected', {}, 30000, restart);
        const me = await browser.call('A', 'me', []);
        assert.notEqual(me.sid, info.sid, 'a full reconnection is a new participant');
        assert.equal(me.metadata, 'granted');
        assert.equal(me.canPublish, false);
        assert.equal(me.canSubscribe, true);
        const gone = browser.events.slice(restart).filter((e) => e.page === 'A' && e.event === 'disconnected');
        assert.deepEqual(gone, [], `page A was disconnected: ${JSON.stringify(gone)}`);
        await browser.call('A', 'disconnect', [], 10000).catch(() => {});
        await browser.command('close', { page: 'A' }, 15000);
      }));
  }
});
