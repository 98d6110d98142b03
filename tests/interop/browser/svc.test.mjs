// Scalable video (SVC) from livekit-client in headless Chromium against our livekit-server.
// Same setup as browser.test.mjs (see harness.mjs and README.md). In both signalling modes:
//   1. VP9: page A publishes its camera with `videoCodec: 'vp9'`; livekit-client sends one
//      VP9 stream with three spatial layers (`L3T3_KEY`). The server must answer VP9 first
//      (else Chromium sends its offer's first codec, VP8, in one layer), pages B and C decode
//      VP9 at the top layer's size, and when B asks for LOW, MEDIUM and HIGH
//      (setVideoQuality) it decodes exactly a quarter, half and the whole width, while C keeps
//      the whole picture; at LOW the server sends B less than a third of what C gets; the
//      switches lose no packets;
//   2. H.264 asked for, and AV1 in one spatial layer (`scalabilityMode: 'L1T3'`): page A sends
//      that codec and page B decodes it (the build before answered VP8 first, which Chromium
//      then sent); AV1 in livekit-client's default `L3T3_KEY`: the server answers
//      the offer's first codec (VP8), as it did before: AV1 layers are described only by the
//      dependency descriptor, which the server does not forward, and Chromium decodes no
//      layered AV1 without it.
// And once (single PC): with adaptiveStream, page B's <video> element of 160x90, 1280x720 and
// 600x338 makes it decode the low, top and middle spatial layer; page C in a namespace of its own behind a 500 kbit/s tbf gets a lower
// spatial layer within 30 s (the congestion control prices layer i as layers 0 to i) while
// page B keeps the top one, and climbs back to the top within 60 s of the cap's removal.
// Every wait has a deadline; a failure prints the server's log, the browser console and the
// samples.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { browserSuite, closePages, connectPage as connectTo, prerequisites, sleep, unique, withEnvDiagnostics } from './harness.mjs';
import { LinkedNs, shapingPrerequisites } from './shaping.mjs';

const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {} },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false } },
];

const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;

const withDiagnostics = (fn) => withEnvDiagnostics(env, fn);
const connectPage = (page, identity, room, mode, b = browser) => connectTo(env, b, page, identity, room, mode.roomOptions);

/** Polls `fetch()` until pred(value) holds; returns {ok, value, history}. */
async function poll(fetch, pred, { timeout = 20000, interval = 400 } = {}) {
  const deadline = Date.now() + timeout;
  const history = [];
  for (;;) {
    const value = await fetch();
    history.push(value);
    if (history.length > 30) history.shift();
    if (pred(value, history)) return { ok: true, value, history };
    if (Date.now() >= deadline) return { ok: false, value, history };
    await sleep(interval);
  }
}

const compact = (v) => ({ mime: v.mimeType, w: v.frameWidth, h: v.frameHeight, dec: v.framesDecoded, rx: v.packetsReceived, bytes: v.bytesReceived, lost: v.packetsLost, err: v.error });
const show = (r) => JSON.stringify(r.history.slice(-8).map(compact));

/** Waits until `page` decodes alice's video as `mime`, `width` wide (any width when null),
 * for 20 new frames. */
async function decodes(page, mime, width, what, { b = browser, timeout = 20000 } = {}) {
  let from = null;
  const fits = typeof width === 'function' ? width : (w) => width === null || w === width;
  const r = await poll(() => b.call(page, 'videoStats', ['alice']), (v) => {
    if (v.error || v.mimeType !== mime || !(v.frameWidth > 0) || !fits(v.frameWidth)) {
      from = null;
      return false;
    }
    from = from ?? v.framesDecoded;
    return v.framesDecoded - from >= 20;
  }, { timeout });
  const wide = typeof width === 'function' ? 'the width wanted' : (width ?? 'any');
  assert.ok(r.ok, `page ${page} does not decode ${mime} ${wide} wide (${what}): ${show(r)}`);
  return r.value;
}

/** Bytes a second `page` receives of alice's video, over `ms`. */
async function rate(page, ms = 3000) {
  const a = await browser.call(page, 'videoStats', ['alice']);
  await sleep(ms);
  const b = await browser.call(page, 'videoStats', ['alice']);
  return ((b.bytesReceived - a.bytesReceived) * 1000) / ms;
}

/** The fake camera's size as livekit-client captures it by default (720p). */
const CAMERA_WIDTH = 1280;

/** Page A's video sender once it encodes `mime` in `mode` at the camera's full size (its
 * encoder starts smaller while its bandwidth estimate grows); returns its outbound-rtp. */
async function publisherSends(mime, mode) {
  const r = await poll(
    async () => (await browser.call('A', 'outboundStats', [])).filter((s) => s.kind === 'video'),
    (out) => out.length === 1 && out[0].mimeType === mime && out[0].scalabilityMode === mode && out[0].frameWidth === CAMERA_WIDTH,
    { timeout: 30000 },
  );
  assert.ok(r.ok, `page A does not send one ${mime} stream in ${mode} ${CAMERA_WIDTH} wide: ${JSON.stringify(r.value)}`);
  return r.value[0];
}

if (why && !notRoot) {
  it('the SVC browser tests can run here', () => assert.fail(`cannot run the SVC browser tests: ${why}`));
}

describe('codecs and SVC: livekit-client VP9, H.264 and AV1 in headless Chromium', { skip: why || false }, () => {
  browserSuite((e, b) => {
    env = e;
    browser = b;
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      it('VP9 L3T3_KEY: each subscriber decodes the spatial layer it asks for', { timeout: 150000 }, (t) =>
        withDiagnostics(async () => {
          const room = unique('lks-vp9');
          await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          await connectPage('C', 'carol', room, mode);
          await browser.call('A', 'publishCamera', [null, { videoCodec: 'vp9' }]);
          const sent = await publisherSends('video/VP9', 'L3T3_KEY');
          const top = sent.frameWidth;
          t.diagnostic(`page A sends VP9 L3T3_KEY, ${top}x${sent.frameHeight}`);
          const start = await decodes('B', 'video/VP9', top, 'at first');
          await decodes('C', 'video/VP9', top, 'at first');

          for (const [quality, width] of [
            ['LOW', top / 4],
            ['MEDIUM', top / 2],
            ['HIGH', top],
          ]) {
            const res = await browser.call('B', 'setVideoQuality', ['alice', quality]);
            assert.ok(!res.error, `setVideoQuality(${quality}): ${JSON.stringify(res)}`);
            await decodes('B', 'video/VP9', width, `after setVideoQuality(${quality})`);
            // C asked for nothing and keeps the whole picture.
            await decodes('C', 'video/VP9', top, `while page B has ${quality}`);
            if (quality === 'LOW') {
              const [low, full] = await Promise.all([rate('B'), rate('C')]);
              t.diagnostic(`at LOW page B receives ${Math.round(low)} B/s, page C ${Math.round(full)} B/s`);
              assert.ok(low * 3 < full, `page B at LOW receives ${Math.round(low)} B/s against page C's ${Math.round(full)}: the upper layers were not left out`);
            }
          }
          const end = await browser.call('B', 'videoStats', ['alice']);
          t.diagnostic(`three switches: page B lost ${end.packetsLost - start.packetsLost} packets, decoded ${end.keyFramesDecoded - start.keyFramesDecoded} keyframes`);
          assert.ok(
            end.packetsLost - start.packetsLost <= 5,
            `page B counts ${end.packetsLost - start.packetsLost} lost packets over three layer switches on a loss-free network (layers left out leave gaps?): ${JSON.stringify(compact(start))} -> ${JSON.stringify(compact(end))}`,
          );
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages(browser, 'A', 'B', 'C');
        }));

      it('the codec asked for is sent: H.264, AV1 in one spatial layer; AV1 in three falls back to VP8', { timeout: 150000 }, (t) =>
        withDiagnostics(async () => {
          for (const [videoCodec, scalabilityMode, mime, sends] of [
            ['h264', undefined, 'video/H264', null],
            ['av1', 'L1T3', 'video/AV1', 'L1T3'],
            ['av1', undefined, 'video/VP8', null],
          ]) {
            const room = unique('lks-av1');
            await connectPage('A', 'alice', room, mode);
            await connectPage('B', 'bob', room, mode);
            await browser.call('A', 'publishCamera', [null, { videoCodec, scalabilityMode }]);
            const r = await poll(
              async () => (await browser.call('A', 'outboundStats', [])).filter((s) => s.kind === 'video' && s.frameWidth > 0),
              (out) => out.length > 0 && out.every((s) => s.mimeType === mime) && (!sends || out[0].scalabilityMode === sends),
            );
            const asked = `${videoCodec} ${scalabilityMode || "(livekit-client's default)"}`;
            assert.ok(r.ok, `page A asked for ${asked} does not send ${mime}: ${JSON.stringify(r.value)}`);
            t.diagnostic(`${asked} asked: page A sends ${mime} ${r.value.map((s) => `${s.frameWidth} ${s.scalabilityMode}`).join(', ')}`);
            await decodes('B', mime, null, `${asked} asked`);
            assert.ok(env.serverAlive(), 'livekit-server exited');
            await closePages(browser, 'A', 'B');
          }
        }));
    });
  }

  it('single PC: with adaptive stream, the size of the <video> element picks the spatial layer', { timeout: 150000 }, (t) =>
    withDiagnostics(async () => {
      const mode = MODES[0];
      const room = unique('lks-as');
      await connectPage('A', 'alice', room, mode);
      await connectPage('B', 'bob', room, { roomOptions: { ...mode.roomOptions, adaptiveStream: { pixelDensity: 1 } } });
      await browser.call('B', 'setVideoElementDefaultSize', [160, 90]);
      await browser.call('A', 'publishCamera', [null, { videoCodec: 'vp9' }]);
      const top = (await publisherSends('video/VP9', 'L3T3_KEY')).frameWidth;
      await decodes('B', 'video/VP9', top / 4, 'in a 160x90 <video>');
      for (const [w, h, want] of [
        [1280, 720, top],
        [600, 338, top / 2],
      ]) {
        const el = await browser.call('B', 'setVideoElementSize', ['alice', w, h]);
        assert.ok(!el.error && el.width === w, `resize <video> to ${w}x${h}: ${JSON.stringify(el)}`);
        await decodes('B', 'video/VP9', want, `in a ${w}x${h} <video>`);
        t.diagnostic(`<video> ${w}x${h}: page B decodes ${want} wide`);
      }
      assert.ok(env.serverAlive(), 'livekit-server exited');
      await closePages(browser, 'A', 'B');
    }));

  it('single PC: a subscriber behind 500 kbit/s gets a lower spatial layer while another keeps the top one; uncapped it climbs back', { timeout: 240000, skip: shapingPrerequisites() || false }, (t) =>
    withDiagnostics(async () => {
      const mode = MODES[0];
      const room = unique('lks-cap');
      const link = new LinkedNs(env.ns);
      link.create();
      try {
        const capped = await link.browser(env, 'chromium-capped', 300);
        await connectPage('A', 'alice', room, mode);
        await connectPage('B', 'bob', room, mode);
        await connectPage('C', 'carol', room, mode, capped);
        await browser.call('A', 'publishCamera', [null, { videoCodec: 'vp9' }]);
        const top = (await publisherSends('video/VP9', 'L3T3_KEY')).frameWidth;
        await decodes('C', 'video/VP9', top, 'before the cap', { b: capped });
        // The top layer takes about 1.5 Mbit/s here, the two below it together about 0.5.
        link.capBandwidth('500kbit');
        const t0 = Date.now();
        await decodes('C', 'video/VP9', (w) => w < top, 'behind 500 kbit/s', { b: capped, timeout: 30000 });
        const low = await capped.call('C', 'videoStats', ['alice']);
        t.diagnostic(`500 kbit/s: page C decodes ${low.frameWidth}x${low.frameHeight} after ${Date.now() - t0} ms`);
        await decodes('B', 'video/VP9', top, 'while page C is capped');
        link.uncap();
        const t1 = Date.now();
        await decodes('C', 'video/VP9', top, 'after the cap is lifted', { b: capped, timeout: 60000 });
        t.diagnostic(`uncapped: page C decodes the top layer again after ${Date.now() - t1} ms`);
        assert.ok(env.serverAlive(), 'livekit-server exited');
        await closePages(capped, 'C');
        await closePages(browser, 'A', 'B');
        capped.send({ cmd: 'exit' });
        await capped.close(12000);
      } catch (e) {
        e.message = `${e.message}\n=== tbf ===\n${link.capStats()}\n--- the server's allocations ---\n${env.serverLinesSince(new Date(Date.now() - 120000), /allocation|probe|backed off/, 20).join('\n')}`;
        throw e;
      } finally {
        link.destroySync();
      }
    }));
});
