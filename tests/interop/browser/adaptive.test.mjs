// Adaptive media with livekit-client in headless Chromium against our livekit-server: simulcast
// layer selection, NACK repair under packet loss, congestion control under a bandwidth cap, and
// active speakers. Same setup as browser.test.mjs (see harness.mjs and README.md): server, page
// server and Chromium inside a private network namespace; the bandwidth-cap test puts one
// subscriber's Chromium into a second namespace joined to the server's by a veth pair (see
// shaping.mjs). Run: node --test tests/interop/browser/
//
// In both signalling modes (single PC on /rtc/v1, dual PC on /rtc):
//   1. quality: page A publishes the fake camera with default simulcast (q/h/f) and dynacast;
//      page B's `setVideoQuality(MEDIUM/LOW/HIGH)` moves its decoded resolution (inbound-rtp
//      frameWidth) to exactly that layer's width, the publisher stops encoding the layers nobody
//      needs (dynacast) and resumes them, and the switches lose no packets; the publisher's
//      bandwidth estimate grows past livekit-client's 1 Mbit/s start (transport-cc feedback);
//   2. adaptive stream: page B with `adaptiveStream` and a 160x90 <video> gets the low layer,
//      1280x720 the top one, 600x338 the middle one;
//   3. loss: with 5% of the UDP packets to and from the server's media port dropped, page B
//      keeps decoding (no stall over 12 s), NACKs, and NACK repair on both legs (the server
//      NACKs the publisher, and answers the subscriber's NACKs) keeps the loss the decoder
//      sees under 3% (LK_ADAPTIVE_BREAK_NACK=1, which drops the clients' NACKs, must make it
//      fail);
//   4. speakers: a Python SDK participant publishing a loud tone shows up in page A's
//      ActiveSpeakersChanged and leaves it when muted (and comes back unmuted); a tone page A
//      publishes as its microphone (WebAudio; Chromium's fake microphone only beeps 20 ms in
//      500 ms, never "speech") shows up in the Python client's active_speakers_changed and
//      leaves it when muted.
// And once (single PC, where Chromium sends its NACKs behind receiver reports):
//   5. 5% random loss downstream, repaired by NACK, does not make the subscriber's layer flap
//      (the congestion control steps down only above 10% loss): at most 4 keyframes in 30 s;
//   6. bandwidth cap: page C in its own namespace, behind a 300 kbit/s tbf, drops below the top
//      layer while page B (uncapped) keeps it; at 60 kbit/s C's video is paused
//      (stream_state_update -> TrackStreamStateChanged "paused"); without the cap C resumes and
//      climbs back to the top layer;
//   7. deep queue: page C behind a 700 kbit/s tbf with 3 s of queue (no loss until the queue is
//      long) leaves the top layer before its round trip or jitter-buffer delay passes 400 ms,
//      never freezes for more than a second, and is back on the top layer within 15 s of the
//      cap's removal, while page B (another link) keeps the top layer throughout. The figures
//      are printed; LK_BROWSER_SERVER_CONFIG='rtc: {congestion_control: {enabled: false}}'
//      runs it against the loss-driven control for comparison.
// Every wait has a deadline; a failure prints the server's log, the browsers' consoles and the
// measurements.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { BrowserEnv, HERE, LineProc, PYTHON, WS_URL, prerequisites, sleep, unique } from './harness.mjs';
import { LinkedNs, PacketLoss, shapingPrerequisites } from './shaping.mjs';

const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {}, singlePC: true },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false }, singlePC: false },
];
const RIDS = ['q', 'h', 'f'];

const why = prerequisites() || shapingPrerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let mark = 0; // index of the first event of the running test in `browser`
const linked = new Set(); // second namespaces still to delete
let loss = null;
let extraDiagnostics = () => '';

async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  extraDiagnostics = () => '';
  try {
    await fn();
  } catch (e) {
    let extra = '';
    try {
      extra = extraDiagnostics();
    } catch (e2) {
      extra = `(extra diagnostics failed: ${e2})`;
    }
    const diag = `${extra}\n${env ? env.diagnostics() : ''}`;
    if (e && typeof e === 'object') {
      e.message = `${e.message}\n\n${diag}`;
      throw e;
    }
    throw new Error(`${e}\n\n${diag}`);
  } finally {
    if (loss) loss.clear();
    for (const l of linked) {
      l.destroySync();
      linked.delete(l);
    }
  }
}

async function connectPage(b, page, identity, room, roomOptions) {
  await b.open(page);
  const tok = await env.token(identity, room);
  const info = await b.call(page, 'connect', [WS_URL, tok, roomOptions], 30000);
  assert.equal(info.identity, identity, `page ${page} connected as ${JSON.stringify(info)}`);
  return info;
}

async function closePages(b, ...pages) {
  for (const p of pages) {
    try {
      await b.call(p, 'disconnect', [], 10000);
    } catch {
      /* broken already; closing the context is enough */
    }
    await b.command('close', { page: p }, 15000);
  }
}

function waitPageEvent(b, page, event, match, { timeout = 20000, after: from = mark } = {}) {
  const pred = typeof match === 'function' ? match : (e) => Object.entries(match).every(([k, v]) => e[k] === v);
  return b.waitFor((e) => e.page === page && e.event === event && pred(e), {
    timeout,
    after: from,
    what: `${event} ${typeof match === 'function' ? match.toString().slice(0, 200) : JSON.stringify(match)} on page ${page}`,
    failOn: ['fatal', 'page_crash'],
  });
}

/** Video outbound-rtp of page `page` by rid: {q: {...}, h: {...}, f: {...}}. */
async function layers(b, page) {
  const out = await b.call(page, 'outboundStats', []);
  return Object.fromEntries(out.filter((s) => s.kind === 'video' && s.rid).map((s) => [s.rid, s]));
}

const sum = (obj, key) => Object.values(obj).reduce((a, s) => a + (s[key] || 0), 0);

/**
 * About how many padding-only packets (Chromium's bandwidth probes, up to 255 bytes of padding
 * each) the publisher sent between two layer snapshots: outbound-rtp headerBytesSent counts
 * headers and padding; a media packet's header is under 40 bytes here.
 */
function paddingPackets(l0, l1) {
  const header = sum(l1, 'headerBytesSent') - sum(l0, 'headerBytesSent');
  const packets = sum(l1, 'packetsSent') - sum(l0, 'packetsSent');
  return Math.max(0, Math.round((header - packets * 40) / 255));
}

/**
 * Polls the subscriber's video stats (and the publisher's layers) until pred({v, l}) holds.
 * Returns {ok, v, l, history}; history holds compact samples for failure messages.
 */
async function pollVideo(sub, subPage, pub, pubPage, who, pred, { timeout = 20000, interval = 500 } = {}) {
  const deadline = Date.now() + timeout;
  const history = [];
  for (;;) {
    const v = await sub.call(subPage, 'videoStats', [who]);
    const l = pub ? await layers(pub, pubPage) : {};
    history.push({
      t: Date.now(),
      w: v.frameWidth,
      h: v.frameHeight,
      dec: v.framesDecoded,
      lost: v.packetsLost,
      nack: v.nackCount,
      kf: v.keyFramesDecoded,
      err: v.error,
      layers: Object.fromEntries(Object.entries(l).map(([r, s]) => [r, [s.frameWidth, s.active, s.framesEncoded, s.qualityLimitationReason]])),
    });
    if (history.length > 80) history.splice(0, 20);
    if (!v.error && pred({ v, l, history })) return { ok: true, v, l, history };
    if (Date.now() >= deadline) return { ok: false, v, l, history };
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())));
  }
}

const show = (r) => JSON.stringify(r.history.slice(-12));

/** Page A (alice) publishes the fake camera in `room` and page B (bob) decodes its top
 * layer; returns that layer's width. */
async function cameraAtTop(room) {
  await connectPage(browser, 'A', 'alice', room, {});
  await connectPage(browser, 'B', 'bob', room, {});
  await browser.call('A', 'publishCamera', []);
  await waitPageEvent(browser, 'B', 'track_subscribed', { participant: 'alice', kind: 'video' });
  return (await waitTopLayer(browser, 'B', browser, 'A', 'alice')).l.f.frameWidth;
}

/**
 * Whether the publisher encoded its top layer (`f`, `top` wide) all through a poll's history:
 * every sample shows it active at that width, with frames encoded since the one before.
 */
function publisherSentTop(history, top) {
  return history.every((x, i) => {
    const f = x.layers.f;
    if (!f || f[0] !== top || f[1] === false) return false;
    return i === 0 || f[2] > (history[i - 1].layers.f?.[2] ?? Infinity);
  });
}

/** Waits until the publisher encodes all three layers and the subscriber decodes the top one. */
async function waitTopLayer(sub, subPage, pub, pubPage, who, timeout = 30000) {
  const r = await pollVideo(sub, subPage, pub, pubPage, who, ({ v, l }) =>
    RIDS.every((rid) => l[rid] && l[rid].frameWidth > 0 && l[rid].active !== false) &&
    l.q.frameWidth < l.h.frameWidth && l.h.frameWidth < l.f.frameWidth &&
    v.frameWidth === l.f.frameWidth && v.framesDecoded > 0,
  { timeout });
  assert.ok(r.ok, `page ${subPage} never decoded the top simulcast layer while the publisher encodes q/h/f: ${show(r)}`);
  return r;
}

/**
 * Page B, which no cap touches, keeps the top layer while page C is capped: every sample over
 * at least two seconds shows it decoding `top` wide. Should the publisher (page A) itself stop
 * encoding its top layer meanwhile (its encoder or its uplink estimate), page B cannot have it
 * then, and must get it back once page A sends it again. A failure shows page A's layers and
 * the server's estimates and allocations since `since`.
 */
async function uncappedKeepsTop(t, top, since, why) {
  const poll = (pred, timeout) => pollVideo(browser, 'B', browser, 'A', 'alice', ({ v, history }) => v.frameWidth === top && pred(history), { timeout });
  let b = await poll((h) => h.length >= 4 && h.every((x) => x.w === top), 8000);
  if (!b.ok && !publisherSentTop(b.history, top)) {
    t.diagnostic(`page A stopped encoding its top layer while ${why}: ${show(b)}`);
    b = await poll((h) => h.length >= 4 && h.slice(-4).every((x) => x.w === top), 20000);
  }
  if (!b.ok) {
    const decided = env.serverLinesSince(since, /allocation|backed off|probe|transport feedback/, 24);
    assert.fail(
      `uncapped page B lost the top layer while ${why} (samples: page B's decoding; page A's layers as [width, active, frames encoded, quality limitation]): ${show(b)}\n` +
        `--- the server's estimates and allocations since the cap (last ${decided.length}) ---\n${decided.join('\n')}`,
    );
  }
}

/**
 * Drops downPercent% of the server's outgoing and upPercent% of its incoming media packets for
 * `ms` while sampling page B's decoding of alice's video every second.
 */
async function underLoss(downPercent, upPercent, ms) {
  const v0 = await browser.call('B', 'videoStats', ['alice']);
  const l0 = await layers(browser, 'A');
  const samples = [];
  extraDiagnostics = () => `=== loss test samples (page B videoStats, nft drops) ===\n${samples.map((s) => JSON.stringify(s)).join('\n')}`;
  loss.apply({ downPercent, upPercent });
  // LK_ADAPTIVE_BREAK_NACK=1 checks the checks: the server never hears of downstream loss,
  // so the NACK-repair test must fail
  if (process.env.LK_ADAPTIVE_BREAK_NACK === '1') loss.blockNacksToServer();
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    await sleep(1000);
    const v = await browser.call('B', 'videoStats', ['alice']);
    samples.push({
      t: Date.now() - t0, w: v.frameWidth, dec: v.framesDecoded, rx: v.packetsReceived, lost: v.packetsLost,
      nack: v.nackCount, kf: v.keyFramesDecoded, freeze: v.freezeCount, drops: loss.dropped(),
    });
  }
  const v1 = await browser.call('B', 'videoStats', ['alice']);
  const l1 = await layers(browser, 'A');
  const dropped = loss.dropped();
  loss.clear();
  const d = (k) => (v1[k] || 0) - (v0[k] || 0);
  const facts =
    `${downPercent}% down / ${upPercent}% up for ${ms / 1000} s: page B decoded ${d('framesDecoded')} frames ` +
    `(${d('keyFramesDecoded')} keyframes), received ${d('packetsReceived')} packets, lost ${d('packetsLost')}, ` +
    `${d('retransmittedPacketsReceived')} retransmissions received on RTX, ` +
    `sent ${d('nackCount')} NACKs; publisher: ${sum(l1, 'nackCount') - sum(l0, 'nackCount')} NACKs and ` +
    `${sum(l1, 'pliCount') - sum(l0, 'pliCount')} PLIs received, ` +
    `${sum(l1, 'retransmittedPacketsSent') - sum(l0, 'retransmittedPacketsSent')} packets retransmitted, ` +
    `~${paddingPackets(l0, l1)} padding-only packets (bandwidth probes) sent; ` +
    `nft dropped ${JSON.stringify(dropped)}; decoded widths per second ${JSON.stringify(samples.map((x) => x.w))}`;
  return { v0, v1, l0, l1, samples, dropped, facts };
}

// ---------------------------------------------------------------------------------------- Python

function pySpeaker(label, room, token, singlePC) {
  const p = new LineProc(label, env.ns.argv([PYTHON, join(HERE, 'py_speaker.py'), '--url', WS_URL, '--token', token, '--single-pc', singlePC ? '1' : '0', '--max-seconds', '150']), {
    env: env.clientEnv(),
  });
  env.procs.push(p);
  p.seq = 0;
  p.command = async (cmd, fields = {}, timeout = 20000) => {
    p.seq += 1;
    const id = `${cmd}-${p.seq}`;
    p.send({ id, cmd, ...fields });
    const res = await p.waitFor((e) => e.event === 'result' && e.id === id, { timeout, what: `result of ${cmd}` });
    if (!res.ok) throw new Error(`[${label}] ${cmd} failed: ${res.error}\n${p.describe()}`);
    return res.value;
  };
  return p;
}

// ---------------------------------------------------------------------------------------- tests

if (why && !notRoot) {
  it('the adaptive browser tests can run here', () => assert.fail(`cannot run the adaptive browser tests: ${why}`));
}

describe('adaptive media: livekit-client in headless Chromium', { skip: why || false }, () => {
  before(async () => {
    env = new BrowserEnv();
    process.once('exit', () => {
      for (const l of linked) l.destroySync();
      if (env) env.stopSync();
    });
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.once(sig, () => {
        for (const l of linked) l.destroySync();
        if (env) env.stopSync();
        process.exit(130);
      });
    }
    await env.start();
    loss = new PacketLoss(env.ns);
    browser = await env.browser('chromium', 900);
  }, { timeout: 90000 });

  after(async () => {
    if (!env) return;
    const keep = process.env.LK_BROWSER_KEEP_LOGS === '1';
    if (keep && browser) writeFileSync(`${env.dir}/browser-events.jsonl`, browser.events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    if (loss) loss.clear();
    for (const l of linked) l.destroySync();
    await env.cleanup({ keepDir: keep });
    if (keep) console.log(`# logs kept in ${env.dir} (livekit-server.log, browser-events.jsonl)`);
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      it('setVideoQuality moves the subscriber between the simulcast layers; dynacast follows', { timeout: 150000 }, (t) =>
        withDiagnostics(async () => {
          const room = unique('lka-q');
          await connectPage(browser, 'A', 'alice', room, { ...mode.roomOptions, dynacast: true });
          await connectPage(browser, 'B', 'bob', room, mode.roomOptions);
          await browser.call('A', 'publishCamera', []);
          await waitPageEvent(browser, 'B', 'track_subscribed', { participant: 'alice', kind: 'video' });
          const top = await waitTopLayer(browser, 'B', browser, 'A', 'alice');
          const start = top.v;
          // transport-cc feedback from the server lets the publisher's bandwidth estimate grow
          // beyond livekit-client's 1 Mbit/s start bitrate (needed for q+h+f)
          const net = await browser.pollUntil('A', 'senderNetStats', [], (n) => n.availableOutgoingBitrate > 1200000, { timeout: 15000 });
          assert.ok(net.ok, `the publisher's bandwidth estimate does not grow (no transport-cc feedback?): ${JSON.stringify(net.value)}`);
          t.diagnostic(`publisher's bandwidth estimate ${(net.value.availableOutgoingBitrate / 1e6).toFixed(2)} Mbit/s`);

          // MEDIUM, LOW, HIGH: each time the decoded width must become exactly that layer's
          // width, with new frames decoded at that size
          const steps = [
            ['MEDIUM', 'h'],
            ['LOW', 'q'],
            ['HIGH', 'f'],
          ];
          for (const [quality, rid] of steps) {
            const tq = Date.now();
            const res = await browser.call('B', 'setVideoQuality', ['alice', quality]);
            assert.ok(!res.error, `setVideoQuality(${quality}): ${JSON.stringify(res)}`);
            let at = null;
            const r = await pollVideo(browser, 'B', browser, 'A', 'alice', ({ v, l }) => {
              const want = l[rid] && l[rid].frameWidth;
              if (!want || v.frameWidth !== want) {
                at = null;
                return false;
              }
              at = at ?? v.framesDecoded;
              return v.framesDecoded - at >= 20;
            }, { timeout: 20000 });
            assert.ok(r.ok, `after setVideoQuality(${quality}) page B does not decode the ${rid} layer: ${show(r)}`);
            t.diagnostic(`setVideoQuality(${quality}): page B decodes ${r.v.frameWidth}x${r.v.frameHeight} (layer ${rid}) within ${r.history[r.history.length - 1].t - tq} ms`);

            if (quality === 'LOW') {
              // dynacast: nobody needs h and f any more, so the publisher stops sending them
              const d = await pollVideo(browser, 'B', browser, 'A', 'alice', ({ l }) => l.h.active === false && l.f.active === false && l.q.active !== false, { timeout: 15000 });
              assert.ok(d.ok, `dynacast: the publisher still sends h/f while its only subscriber wants q: ${show(d)}`);
            }
            if (quality === 'HIGH') {
              const d = await pollVideo(browser, 'B', browser, 'A', 'alice', ({ l }) => RIDS.every((x) => l[x].active !== false), { timeout: 15000 });
              assert.ok(d.ok, `dynacast: the publisher does not resume h/f for a HIGH subscriber: ${show(d)}`);
            }
          }

          // the switches were seamless: contiguous sequence numbers (no "lost" packets on a
          // clean network) and the decoder kept going
          const end = await browser.call('B', 'videoStats', ['alice']);
          t.diagnostic(`three switches: page B lost ${end.packetsLost - start.packetsLost} packets, decoded ${end.keyFramesDecoded - start.keyFramesDecoded} keyframes`);
          assert.ok(
            end.packetsLost - start.packetsLost <= 5,
            `page B counts ${end.packetsLost - start.packetsLost} lost packets over three layer switches on a loss-free network ` +
              `(sequence numbers not contiguous across switches?): start ${JSON.stringify(start)} end ${JSON.stringify(end)}`,
          );
          const snaps = await browser.pollUntil('B', 'videoSnapshot', ['alice'], (s, h) => {
            const keys = new Set(h.filter((x) => !x.error).map((x) => x.key));
            return !s.error && s.mean > 8 && keys.size >= 3;
          }, { timeout: 10000, interval: 300 });
          assert.ok(snaps.ok, `page B's <video> does not show changing pictures after the switches: ${JSON.stringify(snaps.history.slice(-5))}`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages(browser, 'A', 'B');
        }));

      it('adaptive stream: the <video> element size picks the layer', { timeout: 150000 }, (t) =>
        withDiagnostics(async () => {
          const room = unique('lka-as');
          await connectPage(browser, 'A', 'alice', room, mode.roomOptions);
          await connectPage(browser, 'B', 'bob', room, { ...mode.roomOptions, adaptiveStream: { pixelDensity: 1 } });
          await browser.call('B', 'setVideoElementDefaultSize', [160, 90]);
          await browser.call('A', 'publishCamera', []);
          await waitPageEvent(browser, 'B', 'track_subscribed', { participant: 'alice', kind: 'video' });
          // the publisher must offer all three layers before "gets the low one" means anything
          const l0 = await pollVideo(browser, 'B', browser, 'A', 'alice', ({ l }) =>
            RIDS.every((rid) => l[rid] && l[rid].frameWidth > 0) && l.q.frameWidth < l.h.frameWidth && l.h.frameWidth < l.f.frameWidth,
          { timeout: 30000 });
          assert.ok(l0.ok, `the publisher never encoded q/h/f: ${show(l0)}`);

          const steps = [
            [160, 90, 'q'],
            [1280, 720, 'f'],
            [600, 338, 'h'],
          ];
          for (const [w, h, rid] of steps) {
            const ts = Date.now();
            const el = await browser.call('B', 'setVideoElementSize', ['alice', w, h]);
            assert.ok(!el.error && el.width === w && el.height === h, `resize <video> to ${w}x${h}: ${JSON.stringify(el)}`);
            let at = null;
            const r = await pollVideo(browser, 'B', browser, 'A', 'alice', ({ v, l }) => {
              const want = l[rid] && l[rid].frameWidth;
              if (!want || v.frameWidth !== want) {
                at = null;
                return false;
              }
              at = at ?? v.framesDecoded;
              return v.framesDecoded - at >= 20;
            }, { timeout: 25000 });
            assert.ok(r.ok, `with a ${w}x${h} <video> (adaptive stream) page B does not decode the ${rid} layer: ${show(r)}`);
            t.diagnostic(`<video> ${w}x${h}: page B decodes ${r.v.frameWidth}x${r.v.frameHeight} (layer ${rid}) within ${r.history[r.history.length - 1].t - ts} ms`);
          }
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages(browser, 'A', 'B');
        }));

      it('5% packet loss both ways: video keeps decoding, NACK repair on both legs', { timeout: 150000 }, (t) =>
        withDiagnostics(async () => {
          const room = unique('lka-loss');
          await connectPage(browser, 'A', 'alice', room, mode.roomOptions);
          await connectPage(browser, 'B', 'bob', room, mode.roomOptions);
          await browser.call('A', 'publishCamera', []);
          await waitPageEvent(browser, 'B', 'track_subscribed', { participant: 'alice', kind: 'video' });
          await waitTopLayer(browser, 'B', browser, 'A', 'alice');

          const { v0, v1, l0, l1, samples, dropped, facts } = await underLoss(5, 5, 12000);
          const d = (k) => (v1[k] || 0) - (v0[k] || 0);
          t.diagnostic(facts);
          // the impairment really happened
          assert.ok(dropped.down >= 20 && dropped.up >= 20, `nftables dropped too little to test anything: ${facts}`);
          // decoding never stalled: new frames in every 2 s of the 12 s, and at least half the
          // fake camera's 20 fps overall
          for (let i = 2; i < samples.length; i++) {
            assert.ok(samples[i].dec > samples[i - 2].dec, `page B decoded no frame between ${samples[i - 2].t} and ${samples[i].t} ms of loss: ${facts}`);
          }
          assert.ok(d('framesDecoded') >= 120, `page B decoded only ${d('framesDecoded')} frames in 12 s of 5% loss: ${facts}`);
          // the subscriber noticed the downstream loss and asked for it again ...
          assert.ok(d('nackCount') >= 3, `page B sent no NACKs although the server's packets were dropped: ${facts}`);
          // ... the server asked the publisher for what it missed upstream ...
          assert.ok(sum(l1, 'nackCount') - sum(l0, 'nackCount') >= 3, `the server sent the publisher no NACKs although its packets were dropped: ${facts}`);
          // ... the server resent them on the RTX stream it negotiated with page B (Chromium
          // counts a packet repaired there in retransmittedPacketsReceived, and still in the
          // media stream's packetsLost) ...
          assert.ok(d('retransmittedPacketsReceived') >= 3, `page B received no retransmissions on RTX: ${facts}`);
          // ... and what the decoder finally misses is far below the 5% + 5% dropped
          const unrepaired = Math.max(0, d('packetsLost') - d('retransmittedPacketsReceived'));
          const lostFraction = unrepaired / Math.max(1, d('packetsReceived') + d('packetsLost'));
          assert.ok(lostFraction < 0.03, `page B still misses ${(lostFraction * 100).toFixed(2)}% of the packets after NACK repair: ${facts}`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages(browser, 'A', 'B');
        }));

      it('active speakers: a Python tone and a Chromium tone come and go with muting', { timeout: 150000 }, () =>
        withDiagnostics(async () => {
          const room = unique('lka-spk');
          await connectPage(browser, 'A', 'alice', room, mode.roomOptions);
          const py = pySpeaker(`py-speaker:${mode.singlePC ? 'single' : 'dual'}`, room, await env.token('pyspk', room), mode.singlePC);
          await py.waitFor((e) => e.event === 'connected', { timeout: 30000, what: 'connected', failOn: ['fatal', 'connect_error'] });
          await waitPageEvent(browser, 'A', 'participant_connected', { participant: 'pyspk' });

          // Python speaks -> page A lists it
          const speaking = (e, who) => e.speakers.some((s) => s.identity === who);
          await py.command('publish_tone', { freq: 440 });
          await waitPageEvent(browser, 'A', 'track_subscribed', { participant: 'pyspk', kind: 'audio' });
          const on = await waitPageEvent(browser, 'A', 'active_speakers', (e) => speaking(e, 'pyspk'), { timeout: 15000 });
          const lvl = on.speakers.find((s) => s.identity === 'pyspk').level;
          assert.ok(lvl > 0.05, `page A lists pyspk as speaking with level ${lvl}`);

          // muted -> gone; unmuted -> back
          let from = browser.events.length;
          await py.command('mute');
          await waitPageEvent(browser, 'A', 'active_speakers', (e) => !speaking(e, 'pyspk'), { timeout: 15000, after: from });
          assert.ok(!(await browser.call('A', 'activeSpeakers', [])).some((s) => s.identity === 'pyspk'), 'page A still lists the muted pyspk');
          from = browser.events.length;
          await py.command('unmute');
          await waitPageEvent(browser, 'A', 'active_speakers', (e) => speaking(e, 'pyspk'), { timeout: 15000, after: from });

          // Chromium publishes a tone -> the Python client lists alice; muted -> gone
          let pyFrom = py.events.length;
          const tone = await browser.call('A', 'publishTone', [660, 0.5]);
          assert.ok(!tone.error && tone.contextState === 'running', `page A publishTone: ${JSON.stringify(tone)}`);
          await py.waitFor((e) => e.event === 'active_speakers_changed' && speaking(e, 'alice'), {
            timeout: 15000, after: pyFrom, what: 'active_speakers_changed with alice', failOn: ['fatal'],
          });
          pyFrom = py.events.length;
          const muted = await browser.call('A', 'setTrackMuted', ['microphone', true]);
          assert.ok(!muted.error && muted.muted, `page A mute: ${JSON.stringify(muted)}`);
          await py.waitFor((e) => e.event === 'active_speakers_changed' && !speaking(e, 'alice'), {
            timeout: 15000, after: pyFrom, what: 'active_speakers_changed without the muted alice', failOn: ['fatal'],
          });
          assert.ok(!(await py.command('speakers')).some((s) => s.identity === 'alice'), 'the Python client still lists the muted alice');

          await py.command('exit');
          await py.close(10000);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages(browser, 'A');
        }));
    });
  }

  describe('congestion control (single PC)', () => {
    // livekit-client's simulateScenario('subscriber-bandwidth', bps): the server caps what its
    // congestion control sends page B, as LiveKit does, until asked again with 0.
    it('a simulated subscriber bandwidth holds page B below the top layer until it is lifted', { timeout: 150000 }, (t) =>
      withDiagnostics(async () => {
        const top = await cameraAtTop(unique('lka-simbw'));
        const t0 = Date.now();
        await browser.call('B', 'simulate', ['subscriber-bandwidth', 300000], 10000);
        const down = await pollVideo(browser, 'B', null, null, 'alice', ({ v }) => v.frameWidth < top, { timeout: 30000 });
        assert.ok(down.ok, `page B still decodes the top layer (${top} wide) 30 s after asking for 300 kbit/s: ${JSON.stringify(down.history.slice(-5))}`);
        t.diagnostic(`300 kbit/s simulated: page B left the top layer after ${Date.now() - t0} ms (decodes ${down.v.frameWidth} wide)`);
        // while the cap holds, it stays below the top layer
        const held = await pollVideo(browser, 'B', null, null, 'alice', ({ v }) => v.frameWidth >= top, { timeout: 8000 });
        assert.ok(!held.ok, `page B went back to the top layer under the simulated 300 kbit/s: ${JSON.stringify(held.history.slice(-5))}`);
        const t1 = Date.now();
        await browser.call('B', 'simulate', ['subscriber-bandwidth', 0], 10000);
        const up = await pollVideo(browser, 'B', null, null, 'alice', ({ v }) => v.frameWidth === top, { timeout: 60000 });
        assert.ok(up.ok, `page B does not climb back to the top layer within 60 s of the cap's removal: ${JSON.stringify(up.history.slice(-5))}`);
        t.diagnostic(`cap lifted: page B back on the top layer after ${Date.now() - t1} ms`);
        assert.ok(env.serverAlive(), 'livekit-server exited');
        await closePages(browser, 'A', 'B');
      }));

    it('5% random loss (below the 10% step-down threshold, repaired by NACK) does not make the layer flap', { timeout: 150000 }, (t) =>
      withDiagnostics(async () => {
        const top = await cameraAtTop(unique('lka-flap'));
        // downstream only: what page B reports in its receiver reports is the only input
        const { v0, v1, samples, facts } = await underLoss(5, 0, 30000);
        t.diagnostic(facts);
        const keyframes = (v1.keyFramesDecoded || 0) - (v0.keyFramesDecoded || 0);
        const atTop = samples.filter((x) => x.w === top).length;
        // each layer switch costs a keyframe (two for a step down and back up); a steady
        // subscriber needs none, or one or two after an unrepairable loss
        assert.ok(
          keyframes <= 4 && atTop >= samples.length - 1,
          `page B's layer flaps under 5% random loss: ${keyframes} keyframes in 30 s, at the top layer (${top}) in only ${atTop} of ${samples.length} samples. ` +
            `The congestion control should only step down when the loss after repair exceeds 10%. ${facts}`,
        );
        assert.ok(env.serverAlive(), 'livekit-server exited');
        await closePages(browser, 'A', 'B');
      }));

    it('the capped subscriber drops below the top layer, pauses at the floor and climbs back; the other keeps the top layer', { timeout: 240000 }, (t) =>
      withDiagnostics(async () => {
        const room = unique('lka-cap');
        const link = new LinkedNs(env.ns);
        linked.add(link);
        link.create();
        const capped = await link.browser(env, 'chromium-capped', 300);
        const cMark = 0;
        const samples = [];
        extraDiagnostics = () =>
          `=== bandwidth cap: tbf on ${link.serverIf} ===\n${link.capStats()}\n=== samples ===\n${samples.map((s) => JSON.stringify(s)).join('\n')}\n` +
          `=== chromium-capped events ===\n${capped.events.filter((e) => e.event !== 'console').slice(-40).map((e) => JSON.stringify(e)).join('\n')}`;

        await connectPage(browser, 'A', 'alice', room, {});
        await connectPage(browser, 'B', 'bob', room, {});
        await connectPage(capped, 'C', 'carol', room, {});
        await browser.call('A', 'publishCameraAndMicrophone', []);
        await waitPageEvent(browser, 'B', 'track_subscribed', { participant: 'alice', kind: 'video' });
        await waitPageEvent(capped, 'C', 'track_subscribed', { participant: 'alice', kind: 'video' }, { after: cMark });
        const top = (await waitTopLayer(browser, 'B', browser, 'A', 'alice')).l.f.frameWidth;
        await waitTopLayer(capped, 'C', browser, 'A', 'alice');

        // 300 kbit/s toward C: the top layer (~1 Mbit/s here) does not fit
        link.capBandwidth('300kbit');
        const t0 = Date.now();
        const down = await pollVideo(capped, 'C', null, null, 'alice', ({ v }) => v.frameWidth < top, { timeout: 30000 });
        samples.push({ phase: '300kbit', took: Date.now() - t0, history: down.history.slice(-10) });
        assert.ok(down.ok, `page C behind 300 kbit/s still decodes the top layer (${top} wide) after 30 s`);
        t.diagnostic(`300 kbit/s: page C left the top layer after ${Date.now() - t0} ms (decodes ${down.v.frameWidth}x${down.v.frameHeight})`);
        await uncappedKeepsTop(t, top, new Date(t0), 'C was capped');

        // 60 kbit/s: not even the low layer fits -> C's video is paused. The server may have
        // paused it already at 300 kbit/s while the estimate found its feet; then it must still
        // be paused under this cap, else a new pause must come.
        const c60 = capped.events.length;
        const at60 = new Date();
        link.capBandwidth('60kbit', { burst: '4kb' });
        const videoState = () =>
          capped.events.filter((e) => e.event === 'track_stream_state' && e.page === 'C' && e.participant === 'alice' && e.kind === 'video').at(-1)?.state ?? 'active';
        if (videoState() !== 'paused') {
          await waitPageEvent(capped, 'C', 'track_stream_state', { participant: 'alice', kind: 'video', state: 'paused' }, { timeout: 40000, after: c60 }).catch((e) => {
            // what the server's congestion control did meanwhile, first: the rest of the
            // message (the page's own log, the tbf, the server's log tail) may be cut off
            const decided = env.serverLinesSince(at60, /allocation|probe|backed off|silence/, 12);
            const fed = env.serverLinesSince(at60, /transport feedback/, 6);
            e.message =
              `${e.message.split('\n')[0]}\n--- the server's congestion control since the 60 kbit/s cap: decisions (last ${decided.length}) ---\n${decided.join('\n')}\n` +
              `--- feedback (last ${fed.length}) ---\n${fed.join('\n')}\n${e.message}`;
            throw e;
          });
        }
        t.diagnostic(`60 kbit/s: page C's video paused ${Date.now() - t0} ms after the first cap`);

        // no cap: resumed, back at the top layer
        const t1 = Date.now();
        link.uncap();
        await waitPageEvent(capped, 'C', 'track_stream_state', (e) => e.participant === 'alice' && e.kind === 'video' && e.state === 'active' && e.t * 1000 >= t1 - 1000, {
          timeout: 30000,
          after: c60,
        });
        let at = null;
        const up = await pollVideo(capped, 'C', null, null, 'alice', ({ v }) => {
          if (v.frameWidth !== top) {
            at = null;
            return false;
          }
          at = at ?? v.framesDecoded;
          return v.framesDecoded - at >= 20;
        }, { timeout: 60000 });
        samples.push({ phase: 'uncapped', took: Date.now() - t1, history: up.history.slice(-10) });
        assert.ok(up.ok, `page C does not climb back to the top layer within 60 s of the cap's removal: ${show(up)}`);
        t.diagnostic(`uncapped: page C resumed and decodes the top layer again after ${Date.now() - t1} ms`);
        const bEnd = await browser.call('B', 'videoStats', ['alice']);
        assert.equal(bEnd.frameWidth, top, `page B ended at ${bEnd.frameWidth}`);
        assert.ok(env.serverAlive(), 'livekit-server exited');
        await closePages(capped, 'C');
        await closePages(browser, 'A', 'B');
        capped.send({ cmd: 'exit' });
        await capped.close(12000);
      }));

    it('deep queue: the capped subscriber moves down before the delay builds up, never freezes, and climbs back; the other keeps the top layer', { timeout: 240000 }, (t) =>
      withDiagnostics(async () => {
        const room = unique('lka-deep');
        const link = new LinkedNs(env.ns);
        linked.add(link);
        link.create();
        const capped = await link.browser(env, 'chromium-deep', 300);
        const samples = [];
        extraDiagnostics = () =>
          `=== deep-queue tbf on ${link.serverIf} ===\n${link.capStats()}\n=== page C samples (every ~200 ms) ===\n${samples.map((s) => JSON.stringify(s)).join('\n')}\n` +
          `=== chromium-deep events ===\n${capped.events.filter((e) => e.event !== 'console').slice(-40).map((e) => JSON.stringify(e)).join('\n')}`;

        await connectPage(browser, 'A', 'alice', room, {});
        await connectPage(browser, 'B', 'bob', room, {});
        await connectPage(capped, 'C', 'carol', room, {});
        await browser.call('A', 'publishCameraAndMicrophone', []);
        await waitPageEvent(browser, 'B', 'track_subscribed', { participant: 'alice', kind: 'video' });
        // page C's events are counted from its own browser's first (`after: 0`)
        await waitPageEvent(capped, 'C', 'track_subscribed', { participant: 'alice', kind: 'video' }, { after: 0 });
        const topRun = await waitTopLayer(browser, 'B', browser, 'A', 'alice');
        const top = topRun.l.f.frameWidth;
        await waitTopLayer(capped, 'C', browser, 'A', 'alice');

        // page C's decoding every ~200 ms: width, frames, the round trip of its ICE pair and
        // the jitter buffer's delay over the last interval
        let prev = await capped.call('C', 'videoStats', ['alice']);
        const t0 = Date.now();
        const sample = async (phase) => {
          const v = await capped.call('C', 'videoStats', ['alice']);
          const emitted = (v.jitterBufferEmittedCount || 0) - (prev.jitterBufferEmittedCount || 0);
          const jb = emitted > 0 ? (((v.jitterBufferDelay || 0) - (prev.jitterBufferDelay || 0)) / emitted) * 1000 : null;
          const s = {
            phase,
            t: Date.now() - t0,
            w: v.frameWidth,
            dec: v.framesDecoded,
            rttMs: v.roundTripTime != null ? Math.round(v.roundTripTime * 1000) : null,
            jbMs: jb != null ? Math.round(jb) : null,
            dropped: v.framesDropped,
            freezes: v.freezeCount,
          };
          samples.push(s);
          prev = v;
          return s;
        };
        const sampleFor = async (phase, ms, until = () => false) => {
          const end = Date.now() + ms;
          while (Date.now() < end) {
            const s = await sample(phase);
            if (until(s)) return s;
            await sleep(200);
          }
          return null;
        };
        // the longest stretch without a newly decoded frame, in ms
        const longestFreeze = (phase) => {
          const ss = samples.filter((s) => s.phase === phase);
          let worst = 0;
          let last = ss.length ? ss[0].t : 0;
          for (let i = 1; i < ss.length; i++) {
            if (ss[i].dec > ss[i - 1].dec) {
              worst = Math.max(worst, ss[i].t - last);
              last = ss[i].t;
            }
          }
          if (ss.length) worst = Math.max(worst, ss[ss.length - 1].t - last);
          return worst;
        };
        const worst = (phase, k) => Math.max(0, ...samples.filter((s) => s.phase === phase && s[k] != null).map((s) => s[k]));
        await sampleFor('before', 3000);

        // 700 kbit/s toward C with three seconds of queue: nothing is dropped until the queue
        // is long, so only a rising delay tells the server the top layer does not fit
        const capAt = Date.now();
        link.capBandwidth('700kbit', { burst: '16kb', latency: '3s' });
        const moved = await sampleFor('capped', 20000, (s) => s.w < top);
        const tookDown = Date.now() - capAt;
        const rttAtMove = worst('capped', 'rttMs');
        const jbAtMove = worst('capped', 'jbMs');
        await sampleFor('capped', 8000);
        await uncappedKeepsTop(t, top, new Date(capAt), 'C was behind the deep queue');
        const capStats = link.capStats();

        link.uncap();
        const upAt = Date.now();
        const back = await sampleFor('uncapped', 25000, (s) => s.w === top);
        const tookUp = Date.now() - upAt;
        await sampleFor('uncapped', 2000);

        const fig = (phase) =>
          `max rtt ${worst(phase, 'rttMs')} ms, max jitter-buffer delay ${worst(phase, 'jbMs')} ms, longest freeze ${longestFreeze(phase)} ms`;
        const droppedFrames = (samples.at(-1).dropped || 0) - (samples[0].dropped || 0);
        t.diagnostic(`before the cap: ${fig('before')}`);
        t.diagnostic(
          moved
            ? `700 kbit/s deep queue: page C left the top layer after ${tookDown} ms (decodes ${moved.w} wide); by then rtt ${rttAtMove} ms, jitter-buffer delay ${jbAtMove} ms; whole capped phase: ${fig('capped')}`
            : `700 kbit/s deep queue: page C still on the top layer after ${tookDown} ms; rtt up to ${rttAtMove} ms, jitter-buffer delay up to ${jbAtMove} ms; whole capped phase: ${fig('capped')}`,
        );
        t.diagnostic(`uncapped: back on the top layer after ${tookUp} ms; ${fig('uncapped')}; frames dropped over the test ${droppedFrames}`);
        t.diagnostic(`page C layer (decoded width) per sample: ${JSON.stringify(samples.map((s) => [s.phase[0], s.t, s.w]).filter((_, i) => i % 5 === 0))}`);
        t.diagnostic(`tbf: ${capStats.replace(/\s+/g, ' ')}`);

        assert.ok(moved, `page C behind a 700 kbit/s deep queue still decodes the top layer (${top} wide) after 20 s`);
        assert.ok(rttAtMove < 400 && jbAtMove < 400, `page C's delay passed 400 ms before it moved down (rtt ${rttAtMove} ms, jitter buffer ${jbAtMove} ms)`);
        assert.ok(longestFreeze('capped') <= 1000, `page C froze for ${longestFreeze('capped')} ms behind the deep queue`);
        assert.ok(back, `page C did not climb back to the top layer within 25 s of the cap's removal`);
        assert.ok(tookUp <= 15000, `page C took ${tookUp} ms to climb back to the top layer`);
        assert.ok(longestFreeze('uncapped') <= 1000, `page C froze for ${longestFreeze('uncapped')} ms climbing back`);
        assert.ok(env.serverAlive(), 'livekit-server exited');
        await closePages(capped, 'C');
        await closePages(browser, 'A', 'B');
        capped.send({ cmd: 'exit' });
        await capped.close(12000);
      }));
  });
});
