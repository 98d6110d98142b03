// End-to-end encryption with livekit-client in headless Chromium against our livekit-server.
// Same setup as browser.test.mjs (see harness.mjs and README.md). In both signalling modes,
// pages A and B share a passphrase (ExternalE2EEKeyProvider, livekit-client's e2ee worker,
// `encryption` room option, so data is encrypted too) and page C has another:
//   1. page A publishes camera and microphone; the server announces the tracks as encrypted
//      (TrackInfo.encryption GCM); page B decodes the video (frames decoded, a changing
//      picture) and plays the audio; page C, with the wrong key, decodes no picture and
//      reports decryption errors: the server forwarded the encrypted frames untouched, and
//      could not have read them;
//   2. page A's publishData arrives at page B decrypted, with alice as its sender, and page C,
//      which cannot decrypt it, does not get its text.
// Every wait has a deadline; a failure prints the server's log and the browser console.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { browserSuite, closePages, connectPage as connectTo, prerequisites, sleep, unique, withEnvDiagnostics } from './harness.mjs';

const MODES = [
  { name: 'single PC (/rtc/v1, livekit-client default)', roomOptions: {} },
  { name: 'dual PC (singlePeerConnection: false)', roomOptions: { singlePeerConnection: false } },
];
const KEY = 'the shared passphrase of pages A and B';
const OTHER_KEY = 'page C has another one';
/** livekit.Encryption.Type.GCM */
const GCM = 1;

const why = prerequisites();
const notRoot = Boolean(process.getuid && process.getuid() !== 0);
let env = null;
let browser = null;
let mark = 0;

async function withDiagnostics(fn) {
  mark = browser ? browser.events.length : 0;
  await withEnvDiagnostics(env, fn);
}

const connectPage = (page, identity, room, mode, passphrase) =>
  connectTo(env, browser, page, identity, room, { ...mode.roomOptions, encryptionPassphrase: passphrase });

function waitPageEvent(page, event, match, timeout = 20000) {
  return browser.waitFor((e) => e.page === page && e.event === event && Object.entries(match).every(([k, v]) => e[k] === v), {
    timeout,
    after: mark,
    what: `${event} ${JSON.stringify(match)} on page ${page}`,
    failOn: ['fatal', 'page_crash'],
  });
}

if (why && !notRoot) {
  it('the end-to-end encryption browser tests can run here', () => assert.fail(`cannot run the e2ee browser tests: ${why}`));
}

describe('end-to-end encryption: livekit-client in headless Chromium', { skip: why || false }, () => {
  browserSuite((e, b) => {
    env = e;
    browser = b;
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      it('media and data reach the page with the key, and not the page without it', { timeout: 150000 }, (t) =>
        withDiagnostics(async () => {
          const room = unique('lke');
          await connectPage('A', 'alice', room, mode, KEY);
          await connectPage('B', 'bob', room, mode, KEY);
          await connectPage('C', 'carol', room, mode, OTHER_KEY);
          await browser.call('A', 'publishCameraAndMicrophone', []);
          await waitPageEvent('B', 'track_subscribed', { participant: 'alice', kind: 'video' });
          await waitPageEvent('C', 'track_subscribed', { participant: 'alice', kind: 'video' });

          // B: frames decoded and a changing picture
          const b = await browser.pollUntil('B', 'videoStats', ['alice'], (v) => !v.error && v.framesDecoded >= 60, { timeout: 20000 });
          assert.ok(b.ok, `page B (the key) decodes no video: ${JSON.stringify(b.value)}`);
          assert.equal(b.value.encryption, GCM, `the server announces alice's video as ${b.value.encryption}, not GCM`);
          const snaps = await browser.pollUntil('B', 'videoSnapshot', ['alice'], (s, h) => {
            const keys = new Set(h.filter((x) => !x.error).map((x) => x.key));
            return !s.error && s.mean > 8 && keys.size >= 3;
          }, { timeout: 10000, interval: 300 });
          assert.ok(snaps.ok, `page B's <video> shows no changing picture: ${JSON.stringify(snaps.history.slice(-5))}`);
          const audio = await browser.pollUntil('B', 'audioStats', ['alice'], (a) => !a.error && a.totalSamplesReceived > 48000, { timeout: 15000 });
          assert.ok(audio.ok, `page B plays no audio of alice: ${JSON.stringify(audio.value)}`);

          // C: the same packets arrive, nothing decodes, and the client says why
          const c = await browser.call('C', 'videoStats', ['alice']);
          await waitPageEvent('C', 'encryption_error', { participant: 'alice' });
          t.diagnostic(`page C (another key): ${c.packetsReceived} video packets received, ${c.framesDecoded} frames decoded; page B ${b.value.framesDecoded}`);
          assert.ok(c.packetsReceived > 100, `page C receives no video packets: ${JSON.stringify(c)}`);
          assert.ok(!(c.framesDecoded > 0), `page C, without the key, decoded ${c.framesDecoded} frames: the media was not end-to-end encrypted`);

          // data: B reads it, C does not
          const text = `sealed ${room}`;
          await browser.call('A', 'publishData', [text, 'e2ee', true], 20000);
          const got = await browser.pollUntil('B', 'receivedData', [], (d) => d.some((m) => m.text === text), { timeout: 10000 });
          assert.ok(got.ok, `page B did not receive "${text}": ${JSON.stringify(got.value)}`);
          const m = got.value.find((x) => x.text === text);
          // (livekit-client 2.23 leaves EncryptedPacket.encryption_type unset, so the
          // event's encryption type reads NONE even for a packet it decrypted.)
          assert.equal(m.participant, 'alice');
          await sleep(1000);
          const cData = await browser.call('C', 'receivedData', []);
          assert.ok(!cData.some((x) => x.text === text), `page C, without the key, read "${text}"`);
          assert.ok(env.serverAlive(), 'livekit-server exited');
          await closePages(browser, 'A', 'B', 'C');
        }));
    });
  }
});
