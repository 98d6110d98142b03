// WHIP ingest and WHEP playback from a plain page: RTCPeerConnection + fetch in headless
// Chromium, no LiveKit SDK (whip.html), served from http://127.0.0.1:<port>, another origin
// than the server's http://10.77.0.1:7880, so every request must pass CORS and the page must
// be able to read Location and ETag. The unmodified Python `livekit` SDK
// (tests/interop/python/media/rtc_client.py) is on the other side. Run: node --test tests/interop/browser/
//
//   1. the page publishes a 660 Hz tone and a coloured picture with a moving bar by WHIP; the
//      Python SDK decodes the tone (pitch, loudness, purity) and the picture (colour, moving
//      bar, size); trickle, ICE restart (media flows on) and DELETE work; refusals reach the page;
//   2. a simulcast WHIP offer (sendEncodings with rids q/h/f) becomes a simulcast track, and
//      WHEP players get the layer they ask for (?quality=low) or what bandwidth allows;
//   3. the Python SDK publishes a 440 Hz tone and a picture; the page plays them by WHEP and
//      decodes frames of that colour and a 440 Hz tone (WebAudio analyser); a player that
//      vanishes without DELETE is ended when its ICE consent expires, and one whose publisher
//      leaves is ended too;
//   4. a WHEP player without ?quality= gets the layer its bandwidth allows: below the top
//      layer behind a 300 kbit/s cap (a second namespace, tbf), the top layer once uncapped.
// Every wait has a deadline; a failure prints the server log, the console and the clients' output.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { API_KEY, API_SECRET, BrowserEnv, LineProc, NetNs, PORT, prerequisites, PYTHON, ROOT, SERVER_IP, unique, withEnvDiagnostics, WS_URL } from './harness.mjs';
import { LinkedNs, shapingPrerequisites } from './shaping.mjs';

const BASE = `http://${SERVER_IP}:${PORT}`;
const MEDIA = join(ROOT, 'tests', 'interop', 'python', 'media');
const why = prerequisites() || shapingPrerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let cmdSeq = 0;

async function withDiagnostics(fn) {
  if (env) env.restoreMedia();
  await withEnvDiagnostics(env, fn);
}

// LK_BROWSER_BREAK_MEDIA=1 checks the checks: once a session is connected, the server's media
// port is blackholed, and the media tests must fail.
function maybeBreakMedia() {
  if (process.env.LK_BROWSER_BREAK_MEDIA === '1') env.breakMedia();
}

/** The Python SDK client (rtc_client.py) in the namespace, connected as `identity`. */
async function pyClient(label, identity, room) {
  const tok = await env.token(identity, room);
  const p = new LineProc(label, env.ns.argv([PYTHON, join(MEDIA, 'rtc_client.py'), '--url', WS_URL, '--token', tok, '--max-seconds', '150']), {
    env: env.clientEnv(),
  });
  env.procs.push(p);
  await p.waitFor((e) => e.event === 'connected', { timeout: 30000, what: 'connected', failOn: ['fatal', 'connect_error'] });
  return p;
}

/** Sends rtc_client a command and waits for its result event. */
async function pyCmd(p, cmd, fields, event, timeout = 40000) {
  cmdSeq += 1;
  const id = `${cmd}-${cmdSeq}`;
  p.send({ cmd, id, ...fields });
  return p.waitFor((e) => (e.event === event || e.event === 'command_error') && e.id === id, { timeout, what: `${event} for ${cmd}` }).then((e) => {
    if (e.event === 'command_error') throw new Error(`${cmd} failed: ${JSON.stringify(e)}`);
    return e;
  });
}

/** One RoomService call through the Python server SDK inside the namespace. */
function twirp(method, args) {
  const argv = env.ns.argv([PYTHON, join(MEDIA, 'ns_admin.py'), 'twirp', BASE, API_KEY, API_SECRET, method, JSON.stringify(args)]);
  const cp = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 30000, env: env.clientEnv() });
  const line = (cp.stdout || '').trim().split('\n').pop();
  const res = JSON.parse(line || '{}');
  assert.ok(res.ok, `twirp ${method}: ${cp.stdout} ${cp.stderr}`);
  return res.result;
}

// The checks of tests/interop/python/media/mediahelpers.py (assert_tone, assert_video).
function assertTone(res, freq, who) {
  assert.ok(!res.error && res.freq != null, `${who}: no tone: ${JSON.stringify(res)}`);
  assert.ok(Math.abs(res.freq - freq) <= 10, `${who}: expected a ${freq} Hz tone, decoded ${res.freq} Hz: ${JSON.stringify(res)}`);
  assert.ok(res.rms > 1500, `${who}: decoded audio too quiet for the tone: ${JSON.stringify(res)}`);
  assert.ok(res.purity > 0.6, `${who}: not a clean ${freq} Hz tone: ${JSON.stringify(res)}`);
}

function assertVideo(res, color, w, h, who) {
  assert.ok(!res.error, `${who}: ${JSON.stringify(res)}`);
  assert.ok(res.frames >= 20, `${who}: too few frames: ${JSON.stringify(res)}`);
  for (const [fw, fh] of res.sizes) {
    assert.ok(fw > 0 && fw <= w && fh > 0 && fh <= h, `${who}: frame size ${fw}x${fh} exceeds ${w}x${h}`);
    assert.ok(Math.abs(fw * h - fh * w) <= 4 * w, `${who}: frame size ${fw}x${fh} has not the published aspect`);
  }
  assert.ok(res.median_rgb.every((m, i) => Math.abs(m - color[i]) <= 25), `${who}: frames do not show ${JSON.stringify(color)}: ${JSON.stringify(res.median_rgb)}`);
  const seen = res.bars.filter((b) => b !== null);
  assert.ok(seen.length >= 0.8 * res.bars.length, `${who}: the bar is missing from most frames: ${JSON.stringify(res.bars)}`);
  assert.ok(new Set(seen.map((b) => b.toFixed(2))).size >= 3, `${who}: the bar does not move: ${JSON.stringify(res.bars)}`);
}

async function waitConnected(page, name) {
  const r = await browser.pollUntil(page, 'connectionState', [name], (s) => s === 'connected' || s === 'failed', { timeout: 20000, interval: 200 });
  assert.equal(r.value, 'connected', `page ${page} session ${name}: ${JSON.stringify(r.history.slice(-5))}`);
}

if (why && !notRoot) {
  it('the WHIP/WHEP browser tests can run here', () => assert.fail(`cannot run the browser tests: ${why}`));
}

describe('WHIP and WHEP from a plain page on another origin', { skip: why || false }, () => {
  before(async () => {
    env = new BrowserEnv();
    env.ns = new NetNs('lkwhip');
    process.once('exit', () => env && env.stopSync());
    await env.start();
    browser = await env.browser('chromium-whip');
  }, { timeout: 90000 });

  after(async () => {
    if (env) await env.cleanup({ keepDir: process.env.LK_BROWSER_KEEP_LOGS === '1' });
  });

  it('publishes a tone and a picture by WHIP that the Python SDK decodes; trickle, ICE restart, DELETE', { timeout: 150000 }, () =>
    withDiagnostics(async () => {
      const room = unique('whip');
      const opened = await browser.command('open', { page: 'W', path: '/whip.html' }, 45000);
      assert.notEqual(new URL(opened.url).origin, BASE, 'the page must come from another origin than the server');

      // refusals are readable cross-origin, with the drafts' statuses
      const tok = await env.token('whip-pub', room);
      const bad = await browser.call('W', 'rawPost', [`${BASE}/whip/v1`, tok, 'text/plain', 'v=0']);
      assert.equal(bad.status, 415, JSON.stringify(bad));
      const noTok = await browser.call('W', 'rawPost', [`${BASE}/whip/v1`, null, 'application/sdp', 'v=0']);
      assert.equal(noTok.status, 401, JSON.stringify(noTok));

      const color = [40, 160, 220];
      const res = await browser.call('W', 'whipPublish', ['pub', `${BASE}/whip/v1`, tok, { tone: 660, color }], 30000);
      assert.equal(res.status, 201, JSON.stringify(res));
      assert.match(res.contentType, /^application\/sdp/);
      assert.match(res.location || '', /^\/whip\/v1\/PA_\w+$/, `Location readable by the page: ${JSON.stringify(res)}`);
      assert.match(res.etag || '', /^"[^"]+"$/, `ETag readable by the page: ${JSON.stringify(res)}`);
      await waitConnected('W', 'pub');
      maybeBreakMedia();
      const tr = await browser.call('W', 'trickle', ['pub']);
      assert.equal(tr.status, 204, JSON.stringify(tr));

      const py = await pyClient('py-sub', 'pysub', room);
      const subs = await Promise.all(
        ['audio', 'video'].map((kind) =>
          py.waitFor((e) => e.event === 'track_subscribed' && e.participant === 'whip-pub' && e.kind === kind, { timeout: 20000, what: `${kind} subscribed` }),
        ),
      );
      assert.equal(subs[0].source, 'SOURCE_MICROPHONE', JSON.stringify(subs[0]));
      assert.equal(subs[1].source, 'SOURCE_CAMERA', JSON.stringify(subs[1]));
      const heard = await pyCmd(py, 'analyze_audio', { participant: 'whip-pub', seconds: 1, timeout: 20 }, 'audio_analysis');
      assertTone(heard, 660, 'python hearing the WHIP page');
      const seenV = await pyCmd(py, 'analyze_video', { participant: 'whip-pub', frames: 30, timeout: 20 }, 'video_analysis');
      assertVideo(seenV, color, 640, 480, 'python seeing the WHIP page');
      console.log(`# python SDK: tone ${heard.freq} Hz rms ${heard.rms} purity ${heard.purity}; video ${seenV.frames} frames at ${seenV.fps} fps, sizes ${JSON.stringify(seenV.sizes)}, median ${JSON.stringify(seenV.median_rgb)}`);

      const listed = twirp('ListParticipants', { room }).participants.find((p) => p.identity === 'whip-pub');
      assert.ok(listed, 'the WHIP publisher is a participant of the room');
      assert.equal(listed.sid, res.location.split('/').pop());
      assert.equal(listed.kind, 'STANDARD');
      assert.deepEqual(listed.tracks.map((t) => t.source).sort(), ['CAMERA', 'MICROPHONE']);

      // ICE restart: new credentials both ways, and the tone keeps coming
      const rs = await browser.call('W', 'restartIce', ['pub'], 20000);
      assert.equal(rs.status, 200, JSON.stringify(rs));
      assert.notEqual(rs.etag, rs.oldEtag, 'an ICE restart makes a new ICE session (ETag)');
      assert.match(rs.fragment, /a=ice-ufrag:/);
      await waitConnected('W', 'pub');
      assertTone(await pyCmd(py, 'analyze_audio', { participant: 'whip-pub', seconds: 1, timeout: 20 }, 'audio_analysis'), 660, 'python after the ICE restart');

      const del = await browser.call('W', 'remove', ['pub']);
      assert.equal(del.status, 200);
      await py.waitFor((e) => e.event === 'participant_disconnected' && e.participant === 'whip-pub', { timeout: 10000, what: 'whip-pub leaves' });
      await py.close(10000);
      await browser.command('close', { page: 'W' }, 15000);
      assert.ok(env.serverAlive(), 'livekit-server exited');
    }));

  it('a simulcast WHIP offer becomes a simulcast track; WHEP players get the layer they ask for', { timeout: 150000 }, () =>
    withDiagnostics(async () => {
      const room = unique('whip-sim');
      await browser.command('open', { page: 'S', path: '/whip.html' }, 45000);
      const tok = await env.token('sim-pub', room);
      const color = [90, 140, 70];
      const res = await browser.call('S', 'whipPublish', ['pub', `${BASE}/whip/v1`, tok, { tone: 500, color, width: 1280, height: 720, rids: ['q', 'h', 'f'] }], 30000);
      assert.equal(res.status, 201, JSON.stringify(res));
      await waitConnected('S', 'pub');
      const out = await browser.pollUntil('S', 'outbound', ['pub'], (o) => ['q', 'h', 'f'].every((rid) => o.some((s) => s.rid === rid && s.packetsSent > 0)), { timeout: 30000 });
      assert.ok(out.ok, `the page does not send three layers: ${JSON.stringify(out.value)}`);
      const video = twirp('ListParticipants', { room }).participants.find((p) => p.identity === 'sim-pub').tracks.find((t) => t.type === 'VIDEO');
      assert.equal(video.simulcast, true, `the track is announced as simulcast: ${JSON.stringify(video)}`);

      const py = await pyClient('py-sim', 'pysim', room);
      const sv = await py.waitFor((e) => e.event === 'track_subscribed' && e.participant === 'sim-pub' && e.kind === 'video', { timeout: 20000, what: 'video subscribed' });
      assert.equal(sv.simulcasted, true, JSON.stringify(sv));
      assertVideo(await pyCmd(py, 'analyze_video', { participant: 'sim-pub', frames: 30, timeout: 20 }, 'video_analysis'), color, 1280, 720, 'python seeing the simulcast page');

      await browser.command('open', { page: 'L', path: '/whip.html' }, 45000);
      await browser.command('open', { page: 'H', path: '/whip.html' }, 45000);
      const low = await browser.call('L', 'whepPlay', ['low', `${BASE}/whep/v1/${room}/sim-pub/${video.sid}?quality=low`, await env.token('viewer-low', room)], 30000);
      assert.equal(low.status, 201, JSON.stringify(low));
      assert.match(low.location || '', /^\/whep\/v1\/sessions\/PA_\w+$/);
      const high = await browser.call('H', 'whepPlay', ['high', `${BASE}/whep/v1/${room}/sim-pub`, await env.token('viewer-high', room)], 30000);
      assert.equal(high.status, 201, JSON.stringify(high));
      const l = await browser.pollUntil('L', 'playerStats', ['low'], (s) => s.video && s.video.framesDecoded >= 30 && s.video.frameWidth > 0, { timeout: 25000 });
      assert.ok(l.ok, `the low player decodes nothing: ${JSON.stringify(l.value)}`);
      assert.ok(l.value.video.frameWidth <= 320, `?quality=low plays the q layer (320 wide): ${JSON.stringify(l.value)}`);
      const h = await browser.pollUntil('H', 'playerStats', ['high'], (s) => s.video && s.video.framesDecoded >= 30 && s.video.frameWidth >= 640, { timeout: 30000 });
      assert.ok(h.ok, `the player without a quality climbs above the low layer: ${JSON.stringify(h.value)}`);
      console.log(`# low player ${JSON.stringify(l.value.video)}; high player ${JSON.stringify(h.value.video)}`);
      for (const [p, n] of [['L', 'low'], ['H', 'high'], ['S', 'pub']]) {
        assert.equal((await browser.call(p, 'remove', [n])).status, 200);
        await browser.command('close', { page: p }, 15000);
      }
      await py.close(10000);
      assert.ok(env.serverAlive(), 'livekit-server exited');
    }));

  it('plays a Python SDK publisher by WHEP: frames of its colour and its 440 Hz tone', { timeout: 150000 }, () =>
    withDiagnostics(async () => {
      const room = unique('whep');
      const py = await pyClient('py-pub', 'pypub', room);
      const color = [200, 60, 90];
      await pyCmd(py, 'publish_audio', { name: 'tone', freq: 440 }, 'published');
      await pyCmd(py, 'publish_video', { name: 'cam', color, simulcast: false }, 'published');
      // The SDK reports the track published once the server has accepted it, before its
      // offer has reached the server; a WHEP player plays what is published when it asks.
      const published = () => (twirp('ListParticipants', { room }).participants.find((p) => p.identity === 'pypub')?.tracks || []).length;
      const t = Date.now();
      while (published() < 2 && Date.now() - t < 15000) await new Promise((r) => setTimeout(r, 100));
      assert.equal(published(), 2, 'the publisher\'s two tracks are published on the server');
      await browser.command('open', { page: 'P', path: '/whip.html' }, 45000);
      const res = await browser.call('P', 'whepPlay', ['play', `${BASE}/whep/v1/${room}/pypub`, await env.token('whep-viewer', room)], 30000);
      assert.equal(res.status, 201, JSON.stringify(res));
      assert.match(res.location || '', /^\/whep\/v1\/sessions\/PA_\w+$/);
      assert.match(res.etag || '', /^"[^"]+"$/);
      await waitConnected('P', 'play');
      maybeBreakMedia();
      const bars = new Set();
      const st = await browser.pollUntil('P', 'playerStats', ['play'], (s, hist) => {
        if (s.picture) bars.add(s.picture.barY.toFixed(2));
        const first = hist.find((x) => x.video) || s;
        const real = (a) => (a ? a.totalSamplesReceived - a.concealedSamples : 0);
        return (
          s.video && s.video.framesDecoded - first.video.framesDecoded >= 40 &&
          s.picture && s.picture.median.every((m, i) => Math.abs(m - color[i]) <= 30) && bars.size >= 3 &&
          s.audio && real(s.audio) - real(first.audio) >= 48000 &&
          s.tone && Math.abs(s.tone.freq - 440) <= 15 && s.tone.rms > 0.05
        );
      }, { timeout: 30000, interval: 300 });
      assert.ok(st.ok, `the WHEP page does not decode the publisher's picture and tone: last ${JSON.stringify(st.value)}; bar rows ${[...bars]}`);
      console.log(`# WHEP page: ${JSON.stringify(st.value)}`);
      assert.equal((await browser.call('P', 'remove', ['play'])).status, 200);
      await browser.command('close', { page: 'P' }, 15000);
      const viewers = () => twirp('ListParticipants', { room }).participants.filter((p) => p.identity.startsWith('whep-viewer'));
      assert.deepEqual(viewers(), [], 'DELETE removed the player');

      // a player that vanishes without DELETE: its ICE consent expires and the session ends
      await browser.command('open', { page: 'Q', path: '/whip.html' }, 45000);
      const res2 = await browser.call('Q', 'whepPlay', ['play', `${BASE}/whep/v1/${room}/pypub`, await env.token('whep-viewer-2', room)], 30000);
      assert.equal(res2.status, 201, JSON.stringify(res2));
      await waitConnected('Q', 'play');
      assert.equal(viewers().length, 1);
      await browser.command('close', { page: 'Q' }, 15000);
      const t0 = Date.now();
      while (viewers().length > 0 && Date.now() - t0 < 50000) await new Promise((r) => setTimeout(r, 1000));
      const waited = (Date.now() - t0) / 1000;
      assert.deepEqual(viewers(), [], `a player without media is ended (waited ${waited} s)`);
      console.log(`# a vanished WHEP player was ended ${waited.toFixed(1)} s after its page closed`);

      // the publisher leaves: its player has nothing left to play and is ended
      await browser.command('open', { page: 'R', path: '/whip.html' }, 45000);
      const res3 = await browser.call('R', 'whepPlay', ['play', `${BASE}/whep/v1/${room}/pypub`, await env.token('whep-viewer-3', room)], 30000);
      assert.equal(res3.status, 201, JSON.stringify(res3));
      await waitConnected('R', 'play');
      assert.equal(viewers().length, 1);
      await py.close(10000);
      const t1 = Date.now();
      while (viewers().length > 0 && Date.now() - t1 < 20000) await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(viewers(), [], 'a player whose publisher left is ended');
      console.log(`# the WHEP player was ended ${((Date.now() - t1) / 1000).toFixed(1)} s after its publisher left`);
      await browser.command('close', { page: 'R' }, 15000);
      assert.ok(env.serverAlive(), 'livekit-server exited');
    }));
  it('a WHEP player without a quality gets the layer its bandwidth allows', { timeout: 180000 }, () => {
    const link = new LinkedNs(env.ns);
    link.name = `lkwhips${process.pid}`;
    return withDiagnostics(async () => {
      const room = unique('whep-bw');
      await browser.command('open', { page: 'S', path: '/whip.html' }, 45000);
      const res = await browser.call('S', 'whipPublish', ['pub', `${BASE}/whip/v1`, await env.token('bw-pub', room), { tone: 500, color: [90, 140, 70], width: 1280, height: 720, rids: ['q', 'h', 'f'], noise: true }], 30000);
      assert.equal(res.status, 201, JSON.stringify(res));
      await waitConnected('S', 'pub');
      link.create();
      const capped = await link.browser(env, 'chromium-whep-capped', 170);
      await capped.command('open', { page: 'C', path: '/whip.html' }, 45000);
      const play = await capped.call('C', 'whepPlay', ['c', `${BASE}/whep/v1/${room}/bw-pub`, await env.token('bw-viewer', room)], 30000);
      assert.equal(play.status, 201, JSON.stringify(play));
      const video = (st) => st.video || { frameWidth: 0, framesDecoded: 0 };
      // uncapped: the top layer
      const top = await capped.pollUntil('C', 'playerStats', ['c'], (st) => video(st).frameWidth === 1280, { timeout: 40000, interval: 1000 });
      assert.ok(top.ok, `uncapped, the player gets the top layer: ${JSON.stringify(top.history.map(video))}`);
      // 300 kbit/s toward the player: the noisy top layer does not fit, a lower one does
      link.capBandwidth('300kbit');
      const t0 = Date.now();
      const down = await capped.pollUntil('C', 'playerStats', ['c'], (st) => video(st).frameWidth > 0 && video(st).frameWidth < 1280, { timeout: 30000, interval: 1000 });
      assert.ok(down.ok, `behind 300 kbit/s the player still decodes the top layer after 30 s: ${JSON.stringify(down.history.map(video))}\n${link.capStats()}`);
      const downAfter = Date.now() - t0;
      const moving = await capped.pollUntil('C', 'playerStats', ['c'], (st, h) => video(st).framesDecoded - video(h[0]).framesDecoded >= 20, { timeout: 20000, interval: 1000 });
      assert.ok(moving.ok, `the capped player stops decoding: ${JSON.stringify(moving.history.map(video))}\n${link.capStats()}`);
      // no cap: back to the top layer, decoding
      link.uncap();
      let at = null;
      const up = await capped.pollUntil('C', 'playerStats', ['c'], (st) => {
        if (video(st).frameWidth !== 1280) {
          at = null;
          return false;
        }
        at = at ?? video(st).framesDecoded;
        return video(st).framesDecoded - at >= 20;
      }, { timeout: 60000, interval: 1000 });
      assert.ok(up.ok, `uncapped, the player climbs back to the top layer: ${JSON.stringify(up.history.map(video))}`);
      console.log(`# 300 kbit/s: the WHEP player left the top layer after ${downAfter} ms (${video(down.value).frameWidth} wide); uncapped it is back at 1280`);
      assert.equal((await capped.call('C', 'remove', ['c'])).status, 200);
      assert.equal((await browser.call('S', 'remove', ['pub'])).status, 200);
      await browser.command('close', { page: 'S' }, 15000);
      assert.ok(env.serverAlive(), 'livekit-server exited');
    }).finally(() => link.destroySync());
  });
});
