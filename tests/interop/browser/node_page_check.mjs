#!/usr/bin/env node
// Opens livekit-server's node page (/node) in headless Chromium at a phone's size, the way a
// person would: a wrong secret first (the page must say so), then the right one; then waits
// until the page shows the expected participants with a nonzero bitrate on each of their
// tracks, and reports what the DOM shows as one JSON line.
//
//   node node_page_check.mjs --url http://HOST:PORT --key K --secret S --wrong-secret W
//        --expect alice,bob --publisher alice --screenshot FILE [--timeout-s 30]
//
// Output: {"ok": true, "wrong_secret_error": ..., "participants": [...], "tracks": [...],
// "overflow_px": N, "width": N} or {"ok": false, "error": ..., "dom": ...}.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(HERE, '..', 'package.json'));
const { chromium } = require('playwright-core');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const URL_BASE = opt('--url');
const KEY = opt('--key');
const SECRET = opt('--secret');
const WRONG = opt('--wrong-secret', 'not-the-secret');
const EXPECT = opt('--expect', '').split(',').filter(Boolean);
const PUBLISHER = opt('--publisher', '');
const SHOT = opt('--screenshot', '');
const TIMEOUT_MS = Number(opt('--timeout-s', '30')) * 1000;
const CHROMIUM = process.env.LK_CHROMIUM || '/usr/bin/chromium';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const profileRoot = mkdtempSync(join(tmpdir(), 'lkegr-chromium-'));
process.env.TMPDIR = profileRoot;
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});
let page;
try {
  // A phone: 390 x 844 CSS pixels, touch, device pixel ratio 3.
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true });
  page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${URL_BASE}/node`, { timeout: 15000 });

  await page.fill('#key', KEY);
  await page.fill('#secret', WRONG);
  await page.click('#login-button');
  await page.waitForFunction(() => document.getElementById('error').textContent.trim() !== '', null, { timeout: 10000 });
  const wrongError = (await page.textContent('#error')).trim();
  const viewHiddenAfterWrong = await page.isHidden('#view');

  await page.fill('#secret', SECRET);
  await page.click('#login-button');
  // Every expected participant listed, and each of the publisher's tracks with a bitrate.
  await page.waitForFunction(
    ({ expect, publisher }) => {
      const ids = [...document.querySelectorAll('.participant')].map((e) => e.dataset.identity);
      if (!expect.every((x) => ids.includes(x))) return false;
      if (!publisher) return true;
      const rows = [...document.querySelectorAll(`.participant[data-identity="${publisher}"] .track`)];
      return rows.length >= 2 && rows.every((r) => Number(r.querySelector('.bitrate').dataset.bps) > 0);
    },
    { expect: EXPECT, publisher: PUBLISHER },
    { timeout: TIMEOUT_MS, polling: 250 },
  );
  const seen = await page.evaluate(() => ({
    participants: [...document.querySelectorAll('.participant')].map((e) => e.dataset.identity),
    tracks: [...document.querySelectorAll('.participant')].flatMap((p) =>
      [...p.querySelectorAll('.track')].map((r) => ({
        participant: p.dataset.identity,
        kind: r.dataset.kind,
        bps: Number(r.querySelector('.bitrate').dataset.bps),
        bitrate_text: r.querySelector('.bitrate').textContent,
        loss: Number(r.querySelector('.loss').dataset.loss),
        layers: r.querySelector('.layers').textContent,
        row_width: r.getBoundingClientRect().width,
      })),
    ),
    rooms: [...document.querySelectorAll('.room')].map((e) => e.dataset.room),
    totals: Object.fromEntries([...document.querySelectorAll('[data-total]')].map((e) => [e.dataset.total, e.querySelector('b').textContent])),
    overflow_px: document.documentElement.scrollWidth - window.innerWidth,
    width: window.innerWidth,
  }));
  // Still live: the page refreshes on its own (the clock in the header moves).
  const meta1 = await page.textContent('#meta');
  await page.waitForFunction((m) => document.getElementById('meta').textContent !== m, meta1, { timeout: 5000 });
  if (SHOT) await page.screenshot({ path: SHOT, fullPage: true });
  out({ ok: true, wrong_secret_error: wrongError, view_hidden_after_wrong: viewHiddenAfterWrong, page_errors: consoleErrors, ...seen });
} catch (e) {
  let dom = '';
  try {
    dom = page ? (await page.content()).slice(0, 4000) : '';
  } catch {}
  out({ ok: false, error: String(e && e.message), dom });
} finally {
  await browser.close();
  rmSync(profileRoot, { recursive: true, force: true });
}
