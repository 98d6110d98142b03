// Real networks with livekit-client in headless Chromium, in both signalling modes: with every
// UDP packet in the namespace dropped by nftables, two pages join and page B decodes page A's
// video and hears its audio over ICE-TCP (the server's passive candidate on rtc.tcp_port).
// Then, against a server with the embedded TURN server on, pages forced to relay
// (`iceTransportPolicy: 'relay'`) exchange media through it over TURN/UDP and over TURN/TLS
// (TURN/UDP and TURN/TCP dropped), while the media port takes datagrams only from the relay
// port range, and simulateScenario('force-tls') moves a page onto TURN over TLS (the server
// tells its next join to relay, with the TLS URL alone). And a page whose address changes mid-call (a NAT rebinding done by nftables in
// the server's namespace, the page running in a namespace of its own) keeps its session: same
// SID, no reconnection, video both ways, nothing more sent to the old address.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { BrowserEnv, prerequisites, SERVER_IP, UDP_PORT, unique, withEnvDiagnostics, WS_URL } from './harness.mjs';
import { LinkedNs } from './shaping.mjs';

const TCP_PORT = 7881;
const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {} },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false } },
];
const NO_UDP = 'table inet lknet_noudp {\n counter dropped {}\n chain out {\n  type filter hook output priority 0;\n  meta l4proto udp counter name dropped drop\n }\n}\n';

const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let mark = 0;

function inNs(cmd, input, check = true) {
  const argv = env.ns.argv(cmd);
  const cp = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', input, timeout: 10000 });
  if (check) assert.equal(cp.status, 0, `${cmd.join(' ')}: ${cp.stderr}`);
  return cp.stdout;
}

async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  await withEnvDiagnostics(env, fn);
}

function waitPageEvent(page, event, match = {}, timeout = 20000, after = mark) {
  return browser.waitFor(
    (e) => e.page === page && e.event === event && Object.entries(match).every(([k, v]) => e[k] === v),
    { timeout, after, what: `${event} ${JSON.stringify(match)} on page ${page}`, failOn: ['fatal', 'page_crash'] },
  );
}

async function connectPage(page, identity, room, mode, connectOptions) {
  await browser.open(page);
  const tok = await env.token(identity, room);
  const info = await browser.call(page, 'connect', [WS_URL, tok, mode.roomOptions, connectOptions], 45000);
  assert.match(info.sid, /^PA_/);
  return info;
}

/** Page B decodes `n` new frames of alice's video within `timeout`. */
async function decodes(n, timeout) {
  const vs = await browser.pollUntil('B', 'videoStats', ['alice'], (v, h) => {
    const first = h.find((x) => !x.error) || {};
    return !v.error && (v.framesDecoded || 0) - (first.framesDecoded || 0) >= n;
  }, { timeout, interval: 100 });
  assert.ok(vs.ok, `page B did not decode ${n} new frames: ${JSON.stringify(vs.value)}`);
}

/** Page B receives `n` new audio packets from alice within `timeout`. */
async function hears(n, timeout) {
  const as = await browser.pollUntil('B', 'audioStats', ['alice'], (x, h) => {
    const first = h.find((y) => !y.error) || {};
    return !x.error && (x.packetsReceived || 0) - (first.packetsReceived || 0) >= n;
  }, { timeout, interval: 100 });
  assert.ok(as.ok, `page B received no new audio: ${JSON.stringify(as.value)}`);
}

async function closePages() {
  for (const p of ['A', 'B']) {
    await browser.call(p, 'disconnect', [], 10000).catch(() => {});
    await browser.command('close', { page: p }, 15000).catch(() => {});
  }
}

if (why && !notRoot) {
  it('the browser network tests can run here', () => assert.fail(`cannot run the browser tests: ${why}`));
}

describe('livekit-client on hard networks', { skip: why || false }, () => {
  before(async () => {
    env = new BrowserEnv({ nsPrefix: 'lknet' });
    process.once('exit', () => env && env.stopSync());
    await env.start();
    browser = await env.browser('chromium');
  }, { timeout: 90000 });

  after(async () => {
    if (env) await env.cleanup();
  });

  for (const mode of MODES) {
    // livekit-client's simulateScenario('force-tcp'): the server has the participant's next
    // join offered only its ICE-TCP candidate, and the client rejoins at once.
    it(`${mode.name}: simulateScenario('force-tcp') moves page B to ICE-TCP`, { timeout: 120000 }, () =>
      withDiagnostics(async () => {
        const room = unique('lknet-ftcp');
        const tcpConns = () =>
          inNs(['ss', '-Htn', 'state', 'established', '(', 'sport', '=', `:${TCP_PORT}`, ')']).split('\n').filter((l) => l.trim()).length;
        await connectPage('A', 'alice', room, mode);
        const b = await connectPage('B', 'bob', room, mode);
        await browser.call('A', 'publishCameraAndMicrophone', [], 30000);
        await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' }, 30000);
        await decodes(20, 30000);
        // What each page's connections selected (Chromium may keep a TCP connection it
        // opened for its checks a while, so the server's TCP sockets do not tell).
        const selected = async (p) => Object.values(await browser.call(p, 'selectedCandidates', [])).filter(Boolean);
        for (const p of ['A', 'B']) {
          const sel = await selected(p);
          assert.ok(sel.length >= 1 && sel.every((c) => c.protocol === 'udp'), `page ${p} starts on UDP: ${JSON.stringify(sel)}`);
        }
        const at = browser.events.length;
        await browser.call('B', 'simulate', ['force-tcp'], 10000);
        await waitPageEvent('B', 'reconnected', {}, 30000, at);
        const me = await browser.call('B', 'me', []);
        assert.notEqual(me.sid, b.sid, 'page B rejoined as a new participant');
        await decodes(40, 30000);
        await hears(20, 15000);
        assert.ok(tcpConns() >= 1, `page B's media is not on ICE-TCP: ${tcpConns()} connections on :${TCP_PORT}`);
        const sel = await selected('B');
        assert.ok(sel.length >= 1 && sel.every((c) => c.protocol === 'tcp'), `page B selected: ${JSON.stringify(sel)}`);
        await closePages();
      }));

    it(`${mode.name}: with all UDP dropped, media flows over ICE-TCP`, { timeout: 120000 }, () =>
      withDiagnostics(async () => {
        inNs(['nft', '-f', '-'], NO_UDP);
        try {
          const room = unique('lknet-tcp');
          await connectPage('A', 'alice', room, mode);
          await connectPage('B', 'bob', room, mode);
          await browser.call('A', 'publishCameraAndMicrophone', [], 30000);
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' }, 30000);
          await decodes(40, 30000);
          await hears(20, 15000);
          const dropped = Number(/packets (\d+)/.exec(inNs(['nft', 'list', 'counter', 'inet', 'lknet_noudp', 'dropped']))[1]);
          assert.ok(dropped > 0, 'the pages tried UDP');
          const conns = inNs(['ss', '-Htn', 'state', 'established', '(', 'sport', '=', `:${TCP_PORT}`, ')'])
            .split('\n').filter((l) => l.trim()).length;
          assert.ok(conns >= 2, `ICE-TCP connections on the server: ${conns}`);
          await closePages();
        } finally {
          inNs(['nft', '-f', '-'], 'delete table inet lknet_noudp\n');
        }
      }));
  }
});

describe('livekit-client whose address changes mid-call', { skip: why || false }, () => {
  let link = null;
  before(async () => {
    env = new BrowserEnv({ nsPrefix: 'lknet' });
    process.once('exit', () => {
      if (link) link.destroySync();
      if (env) env.stopSync();
    });
    await env.start();
    browser = await env.browser('chromium');
  }, { timeout: 90000 });

  after(async () => {
    if (env) await env.closeClients().catch(() => {});
    if (link) link.destroySync();
    if (env) await env.cleanup();
  });

  const frames = async (b, page, who, n, timeout) => {
    const vs = await b.pollUntil(page, 'videoStats', [who], (v, h) => {
      const first = h.find((x) => !x.error) || {};
      return !v.error && (v.framesDecoded || 0) - (first.framesDecoded || 0) >= n;
    }, { timeout, interval: 100 });
    assert.ok(vs.ok, `page ${page} did not decode ${n} new frames of ${who}: ${JSON.stringify(vs.value)}`);
  };

  for (const mode of MODES) {
    it(`${mode.name}: keeps its session and its media`, { timeout: 150000 }, () =>
      withDiagnostics(async () => {
        link = new LinkedNs(env.ns);
        link.create();
        const moving = await link.browser(env, 'chromium-moving', 200);
        const ip = link.ip;
        const newIp = `10.77.${link.index}.3`;
        const rebind = `table ip lknet_rebind {\n counter moved_out {}\n counter to_old {}\n chain pre {\n  type filter hook prerouting priority -300;\n  iifname "${link.serverIf}" ip saddr ${ip} udp dport ${UDP_PORT} ip saddr set ${newIp}\n }\n chain out {\n  type route hook output priority -300;\n  ip daddr ${ip} udp sport ${UDP_PORT} counter name to_old drop\n  ip daddr ${newIp} udp sport ${UDP_PORT} ip daddr set ${ip} counter name moved_out\n }\n}\n`;
        const count = (name) => Number(/packets (\d+)/.exec(inNs(['nft', 'list', 'counter', 'ip', 'lknet_rebind', name]))[1]);
        try {
          const room = unique('lknet-move');
          const a = await connectPage('A', 'alice', room, mode);
          await moving.open('C');
          const c = await moving.call('C', 'connect', [WS_URL, await env.token('carol', room), mode.roomOptions, {}], 45000);
          await browser.call('A', 'publishCameraAndMicrophone', [], 30000);
          await moving.call('C', 'publishCameraAndMicrophone', [], 30000);
          await frames(browser, 'A', 'carol', 20, 30000);
          await frames(moving, 'C', 'alice', 20, 30000);

          const mark = moving.events.length;
          inNs(['nft', '-f', '-'], rebind);
          const t0 = Date.now();
          const deadline = t0 + 20000;
          while (count('moved_out') < 50) {
            assert.ok(Date.now() < deadline, `the server never sent to the new address (to the old: ${count('to_old')})`);
            await new Promise((r) => setTimeout(r, 100));
          }
          console.log(`# ${mode.name}: media followed the new address within ${((Date.now() - t0) / 1000).toFixed(2)} s`);
          await frames(browser, 'A', 'carol', 30, 15000);
          await frames(moving, 'C', 'alice', 30, 15000);
          const old = count('to_old');
          await frames(moving, 'C', 'alice', 20, 15000);
          assert.equal(count('to_old'), old, 'the old address still receives');

          const after = moving.events.slice(mark).filter((e) => ['reconnecting', 'signal_reconnecting', 'reconnected', 'disconnected'].includes(e.event));
          assert.deepEqual(after, [], `page C reconnected: ${JSON.stringify(after)}`);
          const sc = await moving.call('C', 'state', []);
          assert.equal(sc.sid, c.sid, 'page C kept its SID');
          const sa = await browser.call('A', 'state', []);
          assert.equal(sa.sid, a.sid);
          assert.deepEqual(sa.remote.map((r) => r.sid), [c.sid], 'page A still sees carol with her SID');
          await moving.call('C', 'disconnect', [], 10000).catch(() => {});
          await closePages();
        } finally {
          inNs(['nft', 'delete', 'table', 'ip', 'lknet_rebind'], undefined, false);
          link.destroySync();
          link = null;
        }
      }));
  }
});

const TURN_PORT = 3478;
const TLS_PORT = 5349;
const RELAY = [30000, 30099];
const ONLY_RELAYED = `table inet lknet_relay {\n counter relayed {}\n chain out {\n  type filter hook output priority 0;\n  udp dport ${UDP_PORT} udp sport ${RELAY[0]}-${RELAY[1]} counter name relayed accept\n  udp dport ${UDP_PORT} drop\n }\n}\n`;
const ONLY_TLS = `table inet lknet_onlytls {\n chain out {\n  type filter hook output priority 0;\n  udp dport ${TURN_PORT} drop\n  tcp dport ${TURN_PORT} drop\n }\n}\n`;

describe('livekit-client relayed through the embedded TURN server', { skip: why || false }, () => {
  let certDir = null;
  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'lknet-turn-'));
    const cert = join(certDir, 'turn.crt');
    const key = join(certDir, 'turn.key');
    const cp = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=turn.lknet.test',
      '-addext', `subjectAltName=DNS:turn.lknet.test,IP:${SERVER_IP}`], { encoding: 'utf8' });
    assert.equal(cp.status, 0, cp.stderr);
    const body = `turn:\n  enabled: true\n  udp_port: ${TURN_PORT}\n  tls_port: ${TLS_PORT}\n  domain: ${SERVER_IP}\n  cert_file: ${cert}\n  key_file: ${key}\n  relay_range_start: ${RELAY[0]}\n  relay_range_end: ${RELAY[1]}\n`;
    env = new BrowserEnv({ nsPrefix: 'lknet', serverArgs: ['--config-body', body] });
    process.once('exit', () => env && env.stopSync());
    await env.start();
    browser = await env.browser('chromium');
  }, { timeout: 90000 });

  after(async () => {
    if (env) await env.cleanup();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  const relayed = () => Number(/packets (\d+)/.exec(inNs(['nft', 'list', 'counter', 'inet', 'lknet_relay', 'relayed']))[1]);
  const RELAY_ONLY = { rtcConfig: { iceTransportPolicy: 'relay' } };

  for (const [over, extra] of [['TURN/UDP', null], ['TURN/TLS', ONLY_TLS]]) {
    for (const mode of MODES) {
      it(`${mode.name}: relay-only pages exchange media over ${over}`, { timeout: 120000 }, () =>
        withDiagnostics(async () => {
          inNs(['nft', '-f', '-'], ONLY_RELAYED);
          if (extra) inNs(['nft', '-f', '-'], extra);
          try {
            const room = unique('lknet-turn');
            await connectPage('A', 'alice', room, mode, RELAY_ONLY);
            await connectPage('B', 'bob', room, mode, RELAY_ONLY);
            await browser.call('A', 'publishCameraAndMicrophone', [], 30000);
            await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' }, 30000);
            await decodes(40, 30000);
            await hears(20, 15000);
            assert.ok(relayed() > 0, 'media reached the server from relay ports');
            if (extra) {
              const tls = inNs(['ss', '-Htn', 'state', 'established', '(', 'sport', '=', `:${TLS_PORT}`, ')'])
                .split('\n').filter((l) => l.trim()).length;
              assert.ok(tls >= 2, `TURN/TLS connections on the server: ${tls}`);
            }
            await closePages();
          } finally {
            inNs(['nft', '-f', '-'], 'delete table inet lknet_relay\n');
            if (extra) inNs(['nft', '-f', '-'], 'delete table inet lknet_onlytls\n');
          }
        }));
    }
  }

  // livekit-client's simulateScenario('force-tls'): the server has the participant's next join
  // told to relay (force_relay) through the TURN server's TLS port alone, and the client
  // rejoins at once.
  for (const mode of MODES) {
    it(`${mode.name}: simulateScenario('force-tls') moves page B onto TURN over TLS`, { timeout: 120000 }, () =>
      withDiagnostics(async () => {
        inNs(['nft', '-f', '-'], ONLY_RELAYED);
        try {
          const room = unique('lknet-ftls');
          const tlsConns = () =>
            inNs(['ss', '-Htn', 'state', 'established', '(', 'sport', '=', `:${TLS_PORT}`, ')']).split('\n').filter((l) => l.trim()).length;
          // Page A relays over TURN/UDP (the media port takes only relayed datagrams here).
          await connectPage('A', 'alice', room, mode, RELAY_ONLY);
          const b = await connectPage('B', 'bob', room, mode);
          await browser.call('A', 'publishCameraAndMicrophone', [], 30000);
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' }, 30000);
          await decodes(20, 30000);
          const usesTls = (sel) => Object.values(sel).some((c) => c && c.type === 'relay' && c.relayProtocol === 'tls');
          const before = await browser.call('B', 'selectedCandidates', []);
          assert.ok(!usesTls(before), `page B starts off TURN over TLS: ${JSON.stringify(before)}`);
          const at = browser.events.length;
          await browser.call('B', 'simulate', ['force-tls'], 10000);
          await waitPageEvent('B', 'reconnected', {}, 30000, at);
          const me = await browser.call('B', 'me', []);
          assert.notEqual(me.sid, b.sid, 'page B rejoined as a new participant');
          await decodes(40, 30000);
          await hears(20, 15000);
          const after = await browser.call('B', 'selectedCandidates', []);
          assert.ok(
            Object.values(after).every((c) => c === null || (c.type === 'relay' && c.relayProtocol === 'tls')) && usesTls(after),
            `page B's selected candidates are not TURN over TLS: ${JSON.stringify(after)}`,
          );
          assert.ok(tlsConns() >= 1, `no TURN/TLS connection on :${TLS_PORT}`);
          await closePages();
        } finally {
          inNs(['nft', '-f', '-'], 'delete table inet lknet_relay\n');
        }
      }));
  }
});
