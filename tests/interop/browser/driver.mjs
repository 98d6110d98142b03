#!/usr/bin/env node
// Headless Chromium with livekit-client, driven over stdin/stdout. Run it INSIDE the test's
// network namespace (Chromium gathers no loopback ICE candidates):
//
//   ip netns exec NS node driver.mjs [--chromium /usr/bin/chromium] [--max-seconds 120]
//
// It serves page.html and livekit-client's dist/livekit-client.umd.js (from node_modules, nothing
// from the internet) on http://127.0.0.1:<free port> inside the namespace (a secure context, so
// getUserMedia works with Chromium's fake camera and microphone), launches Chromium through
// playwright-core, then reads one JSON command per line:
//
//   {"id": "x", "cmd": "open", "page": "A"}                      a new browser context + page
//   {"id": "x", "cmd": "open", "page": "W", "path": "/whip.html"} the same with another page
//   {"id": "x", "cmd": "call", "page": "A", "fn": "connect", "args": [...]}
//                                                                calls window.lkt[fn](...args)
//   {"id": "x", "cmd": "close", "page": "A"}                     closes that page's context
//   {"cmd": "exit"}                                              closes Chromium and exits
//
// Everything is reported as one JSON object per line on stdout: {"event": "ready", "url": ...},
// {"event": "result", "id": ..., "ok": true, "value": ...} or {"ok": false, "error": ...},
// the page's room events (tagged with "page"), and its console output and errors
// ({"event": "console" | "pageerror", "page": ..., "text": ...}). It exits on stdin EOF, on
// "exit", or after --max-seconds.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(HERE, '..', 'package.json'));
const { chromium } = require('playwright-core');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const CHROMIUM = opt('--chromium', process.env.LK_CHROMIUM || '/usr/bin/chromium');
const MAX_SECONDS = Number(opt('--max-seconds', '180'));

// The flags from shared/docs/clients.md, plus autoplay for the subscribed <audio> element.
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  // The TURN/TLS tests use a self-signed certificate (everything else is plain http/ws).
  '--ignore-certificate-errors',
  ...(process.env.LK_CHROMIUM_FLAGS ? process.env.LK_CHROMIUM_FLAGS.split(' ').filter(Boolean) : []),
];

const emit = (event, fields = {}) => {
  process.stdout.write(JSON.stringify({ event, t: Date.now() / 1000, ...fields }) + '\n');
};

function distPath(file) {
  // livekit-client's exports map hides dist/; find the package directory from its main entry.
  const main = require.resolve('livekit-client');
  let dir = dirname(main);
  while (!dir.endsWith('livekit-client') && dir !== dirname(dir)) dir = dirname(dir);
  return join(dir, 'dist', file);
}

function startPageServer() {
  const files = {
    '/': ['text/html; charset=utf-8', join(HERE, 'page.html')],
    '/page.html': ['text/html; charset=utf-8', join(HERE, 'page.html')],
    // a plain RTCPeerConnection + fetch page (WHIP/WHEP), without livekit-client
    '/whip.html': ['text/html; charset=utf-8', join(HERE, 'whip.html')],
    '/livekit-client.umd.js': ['text/javascript; charset=utf-8', distPath('livekit-client.umd.js')],
    // the end-to-end encryption worker (a classic script)
    '/livekit-client.e2ee.worker.js': ['text/javascript; charset=utf-8', distPath('livekit-client.e2ee.worker.js')],
  };
  const server = createServer((req, res) => {
    const path = (req.url || '/').split('?')[0];
    const f = files[path];
    if (path === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    }
    if (!f) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    try {
      const body = readFileSync(f[1]);
      res.writeHead(200, { 'content-type': f[0], 'cache-control': 'no-store' });
      res.end(body);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e));
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function main() {
  const pageServer = await startPageServer();
  const base = `http://127.0.0.1:${pageServer.address().port}`;
  // playwright's launch() already uses a new temporary profile; give it our own empty
  // directory anyway (via the tmpdir it uses) so nothing is shared between runs.
  const profileRoot = mkdtempSync(join(tmpdir(), 'lkb-chromium-'));
  process.env.TMPDIR = profileRoot;
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      timeout: 60000,
    });
  } catch (e) {
    emit('fatal', { error: `cannot launch ${CHROMIUM}: ${e && e.message}` });
    pageServer.close();
    rmSync(profileRoot, { recursive: true, force: true });
    process.exit(3);
  }
  emit('ready', { url: base, browser: browser.version(), chromium: CHROMIUM });

  const pages = new Map(); // name -> { context, page }
  let exiting = false;

  async function shutdown(code) {
    if (exiting) return;
    exiting = true;
    const t = setTimeout(() => process.exit(code), 10000);
    t.unref();
    try { await browser.close(); } catch { /* already gone */ }
    pageServer.close();
    rmSync(profileRoot, { recursive: true, force: true });
    emit('exited', { code });
    process.exit(code);
  }

  async function open(name, path = '/page.html') {
    if (pages.has(name)) {
      // a failed test may have left it open: start from a fresh context
      const old = pages.get(name);
      pages.delete(name);
      await old.context.close().catch(() => {});
    }
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    await context.exposeBinding('lktEmit', (_src, ev) => {
      if (ev && typeof ev === 'object') emit(String(ev.event || 'page_event'), { ...ev, page: name });
    });
    const page = await context.newPage();
    page.on('console', (m) => emit('console', { page: name, type: m.type(), text: m.text() }));
    page.on('pageerror', (e) => emit('pageerror', { page: name, text: String(e && (e.stack || e.message || e)) }));
    page.on('crash', () => emit('page_crash', { page: name }));
    pages.set(name, { context, page });
    await page.goto(`${base}${path}`, { waitUntil: 'load', timeout: 30000 });
    const version = await page.evaluate(() => {
      if (!window.lkt) throw new Error('window.lkt is missing: livekit-client.umd.js did not load');
      return window.lkt.version;
    });
    const secure = await page.evaluate(() => window.isSecureContext);
    return { page: name, url: page.url(), livekitClient: version, secureContext: secure };
  }

  async function call(name, fn, args) {
    const p = pages.get(name);
    if (!p) throw new Error(`no page ${name}`);
    return p.page.evaluate(
      async ([f, a]) => {
        if (!window.lkt || typeof window.lkt[f] !== 'function') throw new Error(`window.lkt.${f} is not a function`);
        return window.lkt[f](...a);
      },
      [fn, args || []],
    );
  }

  async function handle(c) {
    switch (c.cmd) {
      case 'open':
        return open(c.page, c.path || '/page.html');
      case 'call':
        return call(c.page, c.fn, c.args);
      case 'close': {
        const p = pages.get(c.page);
        if (p) {
          pages.delete(c.page);
          await p.context.close();
        }
        return true;
      }
      case 'exit':
        await shutdown(0);
        return true;
      default:
        throw new Error(`unknown command ${c.cmd}`);
    }
  }

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    line = line.trim();
    if (!line) return;
    let c;
    try {
      c = JSON.parse(line);
    } catch {
      emit('result', { ok: false, error: `not JSON: ${line.slice(0, 200)}` });
      return;
    }
    handle(c).then(
      (value) => emit('result', { id: c.id, cmd: c.cmd, ok: true, value: value === undefined ? null : value }),
      (e) => emit('result', { id: c.id, cmd: c.cmd, ok: false, error: String((e && e.message) || e) }),
    );
  });
  rl.on('close', () => shutdown(0));
  browser.on('disconnected', () => {
    if (!exiting) {
      emit('fatal', { error: 'Chromium exited' });
      shutdown(4);
    }
  });
  const life = setTimeout(() => {
    emit('lifetime_expired', { seconds: MAX_SECONDS });
    shutdown(0);
  }, MAX_SECONDS * 1000);
  life.unref();
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => shutdown(0));
}

main().catch((e) => {
  emit('fatal', { error: String((e && e.stack) || e) });
  process.exit(2);
});
