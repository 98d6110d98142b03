// livekit-client (npm, dist/livekit-client.umd.js) in headless Debian Chromium, driven by
// playwright-core, against our livekit-server. Server, page server and Chromium all run inside a
// private network namespace (see harness.mjs). Run: node --test tests/interop/browser/
//
// For both signalling modes (livekit-client's default single peer connection on /rtc/v1, and
// `new Room({singlePeerConnection: false})` on /rtc):
//   1. page A publishes camera + microphone (default simulcast); page B decodes video frames
//      (the <video> element's counters, inbound-rtp framesDecoded, changing pictures) and audio
//      (inbound-rtp samples and energy);
//   2. a Python `livekit` SDK subscriber decodes the browser's video frames and audio;
//   3. page A publishData (reliable, with topic) -> page B receives it with identity and topic.
// Every wait has a deadline; a test fails with the server log, the browser console and the
// clients' output when media or data does not arrive.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { browserSuite, prerequisites, unique, withEnvDiagnostics, WS_URL } from './harness.mjs';

const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {}, singlePC: true },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false }, singlePC: false },
];

const VIDEO_FRAMES = 40; // decoded frames the subscriber must see arrive (the fake camera sends 20-30 fps)
const AUDIO_SAMPLES = 48000; // one second at 48 kHz

// Not root: skip (no namespaces). Root but something missing (Chromium, npm packages, the
// server binary): fail, so a broken install never passes as skipped.
const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
// index of the first browser event of the running test: earlier tests' events never match
let mark = 0;

/** Runs a test body; on failure adds the server log, browser console and clients' output. */
async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  if (env) env.restoreMedia();
  await withEnvDiagnostics(env, fn);
}

// LK_BROWSER_BREAK_MEDIA=1 checks the checks: once the pages are connected, every UDP packet
// of the server's media port is dropped, and every test must fail.
function maybeBreakMedia() {
  if (process.env.LK_BROWSER_BREAK_MEDIA === '1') env.breakMedia();
}

async function connectPage(page, identity, room, mode) {
  await browser.open(page);
  const tok = await env.token(identity, room);
  const info = await browser.call(page, 'connect', [WS_URL, tok, mode.roomOptions], 30000);
  assert.equal(info.identity, identity, `page ${page} connected as ${JSON.stringify(info)}`);
  assert.match(info.sid, /^PA_/, `page ${page}: participant sid ${info.sid}`);
  assert.equal(info.room, room);
  return info;
}

async function closePages(...pages) {
  for (const p of pages) {
    try {
      await browser.call(p, 'disconnect', [], 10000);
    } catch {
      /* the page may be broken already; closing its context is enough */
    }
    await browser.command('close', { page: p }, 15000);
  }
}

async function publishCamMic(page) {
  const tracks = await browser.call(page, 'publishCameraAndMicrophone', [], 30000);
  const video = tracks.find((t) => t.kind === 'video');
  const audio = tracks.find((t) => t.kind === 'audio');
  assert.ok(video && audio, `page ${page} published ${JSON.stringify(tracks)}`);
  assert.match(video.sid, /^TR_/);
  assert.match(audio.sid, /^TR_/);
  assert.equal(video.source, 'camera');
  assert.equal(audio.source, 'microphone');
  return { video, audio };
}

/** Creates `name` with the Python `livekit-api` SDK's CreateRoom (from inside the namespace). */
function createRoom(name, fields) {
  const out = env.livekitApi(['r = await lk.room.create_room(api.CreateRoomRequest(**a))', 'print(r.name)'], { name, ...fields });
  assert.equal(out, name, `CreateRoom ${name}`);
}

function waitPageEvent(page, event, match, timeout = 20000) {
  return browser.waitFor(
    (e) => e.page === page && e.event === event && Object.entries(match).every(([k, v]) => e[k] === v),
    { timeout, after: mark, what: `${event} ${JSON.stringify(match)} on page ${page}`, failOn: ['fatal', 'page_crash'] },
  );
}

if (why && !notRoot) {
  it('the browser tests can run here', () => assert.fail(`cannot run the browser tests: ${why}`));
}

describe('livekit-client in headless Chromium', { skip: why || false }, () => {
  browserSuite((e, b) => {
    env = e;
    browser = b;
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      it('page B decodes the camera video and microphone audio that page A publishes', { timeout: 120000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-av');
          const alice = await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          maybeBreakMedia();
          const { video, audio } = await publishCamMic('A');

          const sv = await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' });
          const sa = await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'audio' });
          assert.equal(sv.sid, video.sid);
          assert.equal(sa.sid, audio.sid);
          assert.equal(sv.source, 'camera');
          assert.equal(sa.source, 'microphone');
          assert.equal(sv.simulcasted, true, `the camera track should be announced as simulcast: ${JSON.stringify(sv)}`);
          // without room.sync_streams each track has a stream of its own
          const streams = await browser.call('B', 'remoteStreams', ['alice']);
          assert.deepEqual(
            streams.map((s) => s.stream).sort(),
            [`${alice.sid}|${audio.sid}`, `${alice.sid}|${video.sid}`].sort(),
            JSON.stringify(streams),
          );

          // video: the decoder and the <video> element must both count new frames
          const vs = await browser.pollUntil('B', 'videoStats', ['alice'], (v, h) => {
            const first = h.find((x) => !x.error) || {};
            return (
              !v.error &&
              (v.framesDecoded || 0) - (first.framesDecoded || 0) >= VIDEO_FRAMES &&
              (v.totalVideoFrames || 0) - (first.totalVideoFrames || 0) >= VIDEO_FRAMES &&
              v.videoWidth > 0
            );
          }, { timeout: 25000 });
          const outbound = await browser.call('A', 'outboundStats', []).catch((e) => String(e));
          assert.ok(
            vs.ok,
            `page B did not decode ${VIDEO_FRAMES} new video frames within 25 s; last videoStats ` +
              `${JSON.stringify(vs.value)}; first ${JSON.stringify(vs.history[0])}; publisher outbound-rtp ${JSON.stringify(outbound)}`,
          );
          assert.ok(vs.value.frameWidth >= 160 && vs.value.frameHeight >= 90, `decoded size ${vs.value.frameWidth}x${vs.value.frameHeight}`);

          // the decoded pictures are not black and they change (the fake camera animates)
          const snaps = await browser.pollUntil('B', 'videoSnapshot', ['alice'], (s, h) => {
            const keys = new Set(h.filter((x) => !x.error).map((x) => x.key));
            return !s.error && s.mean > 8 && keys.size >= 3;
          }, { timeout: 10000, interval: 300 });
          assert.ok(snaps.ok, `page B's <video> does not show changing pictures: ${JSON.stringify(snaps.history.slice(-5))}`);

          // audio: samples decoded from received packets (not concealment) and real sound energy
          const as = await browser.pollUntil('B', 'audioStats', ['alice'], (a, h) => {
            const first = h.find((x) => !x.error) || {};
            const real = (x) => (x.totalSamplesReceived || 0) - (x.concealedSamples || 0);
            return (
              !a.error &&
              (a.packetsReceived || 0) - (first.packetsReceived || 0) >= 40 &&
              real(a) - real(first) >= AUDIO_SAMPLES &&
              (a.totalAudioEnergy || 0) - (first.totalAudioEnergy || 0) > 0.01 &&
              h.some((x) => (x.audioLevel || 0) > 0.05)
            );
          }, { timeout: 20000 });
          assert.ok(
            as.ok,
            `page B did not receive ${AUDIO_SAMPLES} audio samples with sound within 20 s; last audioStats ` +
              `${JSON.stringify(as.value)}; first ${JSON.stringify(as.history[0])}`,
          );
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('page B and livekit-api see the audio features and the video size page A updates', { timeout: 90000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-upd');
          await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          const { video, audio } = await publishCamMic('A');
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'audio', sid: audio.sid });
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video', sid: video.sid });
          const ENHANCED_NC = 5; // AudioTrackFeature.TF_ENHANCED_NOISE_CANCELLATION
          const sorted = (xs) => [...xs].sort((x, y) => x - y);
          const pubOf = (ps, sid) => (Array.isArray(ps) ? ps.find((p) => p.sid === sid) : undefined);
          // What the server holds, as the Python livekit-api SDK reads it.
          const record = () =>
            JSON.parse(
              env.livekitApi(
                [
                  'p = await lk.room.get_participant(api.RoomParticipantIdentity(room=a["room"], identity="alice"))',
                  'print(json.dumps({t.sid: {"width": t.width, "height": t.height, "features": list(t.audio_features)} for t in p.tracks}))',
                ],
                { room },
              ),
            );

          // livekit-client's own UpdateLocalAudioTrack: the noise filter turned on, then off.
          for (const on of [true, false]) {
            const sent = await browser.call('A', 'noiseFilter', [on]);
            assert.equal(sent.sid, audio.sid, JSON.stringify(sent));
            assert.equal(sent.features.includes(ENHANCED_NC), on, `features page A sent: ${JSON.stringify(sent)}`);
            const seen = await browser.pollUntil('B', 'remotePublications', ['alice'], (ps) => {
              const a = pubOf(ps, audio.sid);
              return Boolean(a) && JSON.stringify(sorted(a.audioFeatures)) === JSON.stringify(sorted(sent.features));
            }, { timeout: 10000 });
            assert.ok(seen.ok, `page B's record of alice's microphone does not have the features page A sent (${JSON.stringify(sent.features)}): ${JSON.stringify(seen.value)}`);
            assert.deepEqual(sorted(record()[audio.sid].features), sorted(sent.features), 'GetParticipant');
          }

          // UpdateLocalVideoTrack: page B's publication takes the new dimensions.
          const size = { width: 400, height: 224 };
          await browser.call('A', 'sendVideoTrackSize', [size.width, size.height]);
          const seen = await browser.pollUntil('B', 'remotePublications', ['alice'], (ps) => {
            const v = pubOf(ps, video.sid);
            return Boolean(v && v.dimensions) && v.dimensions.width === size.width && v.dimensions.height === size.height;
          }, { timeout: 10000 });
          assert.ok(seen.ok, `page B's record of alice's camera is not ${size.width}x${size.height}: ${JSON.stringify(seen.value)}`);
          const rec = record()[video.sid];
          assert.deepEqual([rec.width, rec.height], [size.width, size.height], 'GetParticipant');
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('in a room created with sync_streams, page B gets page A\'s camera and microphone in one MediaStream and plays both', { timeout: 120000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-sync');
          createRoom(room, { sync_streams: true });
          const alice = await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          const { video, audio } = await publishCamMic('A');
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video', sid: video.sid });
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'audio', sid: audio.sid });
          const streams = await browser.call('B', 'remoteStreams', ['alice']);
          assert.deepEqual(
            streams.map((s) => [s.kind, s.sid, s.stream, s.tracksInStream]).sort(),
            [
              ['audio', audio.sid, `${alice.sid}|camera`, 2],
              ['video', video.sid, `${alice.sid}|camera`, 2],
            ],
            `page B's tracks of alice are not one stream: ${JSON.stringify(streams)}`,
          );
          const vs = await browser.pollUntil('B', 'videoStats', ['alice'], (v, h) => {
            const first = h.find((x) => !x.error) || {};
            return !v.error && (v.framesDecoded || 0) - (first.framesDecoded || 0) >= VIDEO_FRAMES && v.videoWidth > 0;
          }, { timeout: 25000 });
          assert.ok(vs.ok, `page B did not decode ${VIDEO_FRAMES} new video frames within 25 s: ${JSON.stringify(vs.value)}`);
          const as = await browser.pollUntil('B', 'audioStats', ['alice'], (a, h) => {
            const first = h.find((x) => !x.error) || {};
            return !a.error && (a.packetsReceived || 0) - (first.packetsReceived || 0) >= 40 && (a.totalAudioEnergy || 0) - (first.totalAudioEnergy || 0) > 0.01;
          }, { timeout: 20000 });
          assert.ok(as.ok, `page B did not play alice's audio within 20 s: ${JSON.stringify(as.value)}`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('in a room created with a playout delay, page B holds alice\'s video that long before decoding it', { timeout: 120000 }, (t) =>
        withDiagnostics(async () => {
          const room = unique('lkb-delay');
          createRoom(room, { min_playout_delay: 600, max_playout_delay: 2000 });
          await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          const { video } = await publishCamMic('A');
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video', sid: video.sid });
          const started = await browser.pollUntil('B', 'videoStats', ['alice'], (v) => !v.error && (v.jitterBufferEmittedCount || 0) >= 20, { timeout: 25000 });
          assert.ok(started.ok, `page B decodes no video: ${JSON.stringify(started.value)}`);
          // the mean time a frame waited in the jitter buffer over the next 40 frames or more
          const v0 = started.value;
          const more = await browser.pollUntil('B', 'videoStats', ['alice'], (v) => !v.error && v.jitterBufferEmittedCount - v0.jitterBufferEmittedCount >= 40, { timeout: 25000 });
          assert.ok(more.ok, `page B stopped decoding: ${JSON.stringify(more.value)}`);
          const v1 = more.value;
          const held = (v1.jitterBufferDelay - v0.jitterBufferDelay) / (v1.jitterBufferEmittedCount - v0.jitterBufferEmittedCount);
          t.diagnostic(`page B held alice's frames ${(held * 1000).toFixed(0)} ms on average (jitterBufferTargetDelay ${JSON.stringify(v1.jitterBufferTargetDelay)})`);
          // without a playout delay Chromium holds frames a few milliseconds here
          assert.ok(
            held >= 0.45 && held <= 2.0,
            `page B held alice's frames ${(held * 1000).toFixed(0)} ms on average, not the room's 600-2000 ms: ${JSON.stringify(v1)}`,
          );
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('page A lets only carol subscribe: page B is told it may not and gets nothing, then gets both tracks once everyone may', { timeout: 120000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-perm');
          await connectPage('A', 'alice', room, mode);
          await browser.call('A', 'setTrackSubscriptionPermissions', [false, ['carol']]);
          const { video, audio } = await publishCamMic('A');
          const from = browser.events.length;
          await connectPage('B', 'bob', room, mode);
          // (told while page B still connects, when livekit-client updates the publication
          // but holds the room event back)
          const denied = await browser.pollUntil('B', 'trackPermissions', ['alice'], (ps) =>
            !ps.error && ps.length === 2 && ps.every((p) => p.permission === 'not_allowed'), { timeout: 20000 });
          assert.ok(denied.ok, `page B is not told it may not have alice's tracks: ${JSON.stringify(denied.value)}`);
          assert.ok(denied.value.every((p) => !p.subscribed), `page B has a track it may not have: ${JSON.stringify(denied.value)}`);
          assert.ok(
            !browser.events.slice(from).some((e) => e.page === 'B' && e.event === 'track_subscribed'),
            'page B subscribed to a track it may not have',
          );
          mark = browser.events.length;
          await browser.call('A', 'setTrackSubscriptionPermissions', [true, []]);
          for (const t of [video, audio]) {
            await waitPageEvent('B', 'track_permission', { participant: 'alice', sid: t.sid, status: 'allowed' });
            await waitPageEvent('B', 'track_subscribed', { participant: 'alice', sid: t.sid });
          }
          const vs = await browser.pollUntil('B', 'videoStats', ['alice'], (v) => !v.error && (v.framesDecoded || 0) >= 20, { timeout: 25000 });
          assert.ok(vs.ok, `page B does not decode alice's video once allowed: ${JSON.stringify(vs.value)}`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));

      it('a Python SDK subscriber decodes the video and audio the browser publishes', { timeout: 120000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-py');
          await connectPage('A', 'alice', room, mode);
          maybeBreakMedia();
          const { video, audio } = await publishCamMic('A');
          // let the browser's media reach the server before the Python client joins
          const out = await browser.pollUntil('A', 'outboundStats', [], (o) => o.some((s) => s.kind === 'video' && s.packetsSent > 0), {
            timeout: 15000,
          });
          assert.ok(out.ok, `page A sends no video: ${JSON.stringify(out.value)}`);

          const py = env.pythonSubscriber(`py:${mode.singlePC ? 'single' : 'dual'}`, [
            '--url',
            WS_URL,
            '--token',
            await env.token('pysub', room),
            '--publisher',
            'alice',
            '--single-pc',
            mode.singlePC ? '1' : '0',
            '--video-frames',
            String(VIDEO_FRAMES),
            '--audio-seconds',
            '2',
            '--timeout',
            '40',
          ]);
          const connected = await py.waitFor((e) => e.event === 'connected', {
            timeout: 30000,
            what: 'connected',
            failOn: ['fatal', 'connect_error'],
          });
          assert.ok(connected.remote.includes('alice'), `python client does not see alice: ${JSON.stringify(connected)}`);
          const tv = await py.waitFor((e) => e.event === 'track_subscribed' && e.participant === 'alice' && e.kind === 'video', {
            timeout: 20000,
            what: 'video track_subscribed',
            failOn: ['fatal'],
          });
          const ta = await py.waitFor((e) => e.event === 'track_subscribed' && e.participant === 'alice' && e.kind === 'audio', {
            timeout: 20000,
            what: 'audio track_subscribed',
            failOn: ['fatal'],
          });
          assert.equal(tv.sid, video.sid);
          assert.equal(ta.sid, audio.sid);
          assert.match(tv.mime, /video\/vp8/i);
          assert.match(ta.mime, /audio\/opus/i);

          const res = await py.waitFor((e) => e.event === 'result', { timeout: 60000, what: 'result', failOn: ['fatal'] });
          const v = res.video;
          const a = res.audio;
          assert.ok(v.frames >= VIDEO_FRAMES, `python decoded only ${v.frames} video frames: ${JSON.stringify(res)}`);
          assert.ok(v.distinct >= VIDEO_FRAMES / 2, `python's decoded frames do not change (frozen or repeated): ${JSON.stringify(res)}`);
          assert.ok(v.sizes.length > 0 && v.sizes.every(([w, h]) => w >= 160 && h >= 90), `decoded frame sizes ${JSON.stringify(v.sizes)}`);
          assert.ok(a.samples >= 2 * 48000, `python decoded only ${a.samples} audio samples: ${JSON.stringify(res)}`);
          assert.ok(a.loud_chunks > 0 && a.peak >= 1000, `python's decoded audio is silent (the fake microphone beeps): ${JSON.stringify(res)}`);
          assert.equal(res.complete, true, JSON.stringify(res));
          await py.close(10000);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A');
        }));

      it('page B receives page A\'s reliable publishData with sender identity and topic', { timeout: 90000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lkb-data');
          await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          await waitPageEvent('A', 'participant_connected', { participant: 'bob' });
          maybeBreakMedia();
          const tag = unique('msg');
          const sent = [];
          for (let i = 0; i < 5; i++) {
            const text = `${tag} #${i} ${'x'.repeat(i * 300)}`;
            sent.push({ text, topic: i === 4 ? 'lkb-other' : 'lkb-chat' });
          }
          for (const m of sent) await browser.call('A', 'publishData', [m.text, m.topic, true], 20000);

          const got = await browser.pollUntil('B', 'receivedData', [], (d) => d.filter((m) => m.text.startsWith(tag)).length >= sent.length, {
            timeout: 15000,
            interval: 250,
          });
          const mine = got.value.filter((m) => m.text.startsWith(tag));
          assert.ok(got.ok, `page B received ${mine.length} of ${sent.length} messages: ${JSON.stringify(got.value).slice(0, 2000)}`);
          assert.deepEqual(
            mine.map((m) => ({ text: m.text, topic: m.topic, participant: m.participant, senderIdentity: m.senderIdentity })),
            sent.map((m) => ({ text: m.text, topic: m.topic, participant: 'alice', senderIdentity: 'alice' })),
            'messages, in order, with sender identity and topic',
          );
          // reliable: DataPacket_Kind.RELIABLE is 0 in livekit-client
          assert.ok(mine.every((m) => m.kind === 0), `kinds ${JSON.stringify(mine.map((m) => m.kind))}`);
          // nothing is echoed back to the sender
          const echoed = (await browser.call('A', 'receivedData', [])).filter((m) => m.text.startsWith(tag));
          assert.deepEqual(echoed, [], 'the sender must not receive its own data');
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages('A', 'B');
        }));
    });
  }
});
