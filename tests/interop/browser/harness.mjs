// Harness for the browser interop tests: a private network namespace, livekit-server inside it,
// and client processes inside it (driver.mjs = headless Chromium with livekit-client;
// py_subscriber.py = the Python `livekit` SDK). Every wait has a deadline.
//
// Real WebRTC stacks gather no loopback candidates, so the namespace has a veth pair
// v0 10.77.0.1 <-> v1 10.77.0.2; the server binds and advertises 10.77.0.1, and Chromium loads
// its page from 127.0.0.1 inside the namespace. No traffic leaves 127.0.0.0/8 and 10.77.0.x.
//
// Environment: LIVEKIT_SERVER_BIN (default target/debug/livekit-server), LK_CHROMIUM
// (default /usr/bin/chromium), LK_BROWSER_RUST_LOG (server RUST_LOG, default "debug"),
// LK_PYTHON (default .venv/bin/python, else python3), LK_CHROMIUM_FLAGS (more Chromium flags,
// space-separated, e.g. "--enable-logging --log-file=/tmp/chromium.log --v=1").

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const INTEROP = resolve(HERE, '..');
export const ROOT = resolve(INTEROP, '..', '..');
const require = createRequire(join(INTEROP, 'package.json'));

export const SERVER_IP = '10.77.0.1';
export const PEER_IP = '10.77.0.2';
export const PORT = 7880;
export const UDP_PORT = 7882;
export const WS_URL = `ws://${SERVER_IP}:${PORT}`;
export const API_KEY = 'devkey';
export const API_SECRET = 'secret';

export const SERVER_BIN = process.env.LIVEKIT_SERVER_BIN || join(ROOT, 'target', 'debug', 'livekit-server');
export const CHROMIUM = process.env.LK_CHROMIUM || '/usr/bin/chromium';
export const PYTHON =
  process.env.LK_PYTHON || (existsSync(join(ROOT, '.venv', 'bin', 'python')) ? join(ROOT, '.venv', 'bin', 'python') : 'python3');

let nsCounter = 0;
let uniqueCounter = 0;

export function unique(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${process.pid}-${uniqueCounter}-${Math.random().toString(36).slice(2, 7)}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(argv, { check = true, timeout = 15000 } = {}) {
  const cp = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
  if (check && cp.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (${cp.status}${cp.error ? ' ' + cp.error.message : ''}): ${(cp.stderr || cp.stdout || '').trim()}`);
  }
  return cp;
}

/** Why these tests cannot run here (null if they can). */
export function prerequisites() {
  if (process.getuid && process.getuid() !== 0) return 'the browser tests need root (they create a network namespace)';
  if (run(['ip', '-V'], { check: false }).status !== 0) return 'the `ip` command (iproute2) is not installed';
  if (!existsSync(CHROMIUM)) return `Chromium not found at ${CHROMIUM} (apt-get install chromium)`;
  if (!existsSync(SERVER_BIN)) return `server binary not found: ${SERVER_BIN} (cargo build --bins)`;
  for (const mod of ['playwright-core', 'livekit-client', 'livekit-server-sdk']) {
    try {
      require.resolve(mod);
    } catch {
      return `npm package ${mod} is not installed in tests/interop (npm ci)`;
    }
  }
  return null;
}

// ------------------------------------------------------------------------------ namespace

export class NetNs {
  constructor(prefix = 'lkb') {
    nsCounter += 1;
    this.name = `${prefix}${process.pid}x${nsCounter}`;
    this.created = false;
  }

  create() {
    const n = this.name;
    run(['ip', 'netns', 'add', n]);
    this.created = true;
    try {
      for (const cmd of [
        ['link', 'set', 'lo', 'up'],
        ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'],
        ['addr', 'add', `${SERVER_IP}/24`, 'dev', 'v0'],
        ['addr', 'add', `${PEER_IP}/24`, 'dev', 'v1'],
        ['link', 'set', 'v0', 'up'],
        ['link', 'set', 'v1', 'up'],
      ]) {
        run(['ip', '-n', n, ...cmd]);
      }
    } catch (e) {
      this.destroySync();
      throw e;
    }
    return this;
  }

  argv(cmd) {
    return ['ip', 'netns', 'exec', this.name, ...cmd];
  }

  pids() {
    const cp = run(['ip', 'netns', 'pids', this.name], { check: false });
    return (cp.stdout || '').split(/\s+/).filter((x) => /^\d+$/.test(x)).map(Number);
  }

  /** Kills whatever still runs in the namespace (TERM, then KILL) and deletes it. */
  destroySync() {
    if (!this.created) return;
    for (const sig of ['SIGTERM', 'SIGKILL']) {
      let pids = this.pids();
      if (!pids.length) break;
      for (const pid of pids) {
        try {
          process.kill(pid, sig);
        } catch {
          /* gone */
        }
      }
      const deadline = Date.now() + 3000;
      while (Date.now() < deadline && this.pids().length) spawnSync('sleep', ['0.05']);
    }
    run(['ip', 'netns', 'del', this.name], { check: false });
    this.created = false;
  }
}

// ------------------------------------------------------------------------------ JSON-line processes

/** A process inside the namespace that prints one JSON event per line on stdout. */
export class LineProc {
  constructor(label, argv, { env, stderrPath } = {}) {
    this.label = label;
    this.argv = argv;
    this.events = [];
    this.raw = [];
    this.stderr = '';
    this.exitCode = undefined;
    this.waiters = new Set();
    this.stderrPath = stderrPath;
    this.proc = spawn(argv[0], argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let buf = '';
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.raw.push(line);
        if (this.raw.length > 4000) this.raw.splice(0, 1000);
        try {
          const ev = JSON.parse(line);
          if (ev && typeof ev === 'object' && 'event' in ev) this.events.push(ev);
        } catch {
          /* not an event */
        }
        this._wake();
      }
    });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (chunk) => {
      this.stderr += chunk;
      if (this.stderr.length > 200000) this.stderr = this.stderr.slice(-100000);
    });
    this.proc.stdin.on('error', () => {});
    this.exited = new Promise((res) => {
      this.proc.on('exit', (code, signal) => {
        this.exitCode = code === null ? signal : code;
        this._wake();
        res(this.exitCode);
      });
      this.proc.on('error', (e) => {
        this.stderr += `\nspawn error: ${e.message}`;
        this.exitCode = 'spawn-error';
        this._wake();
        res(this.exitCode);
      });
    });
  }

  _wake() {
    for (const w of [...this.waiters]) w();
  }

  alive() {
    return this.exitCode === undefined;
  }

  send(obj) {
    if (!this.alive()) throw new Error(`[${this.label}] cannot send ${JSON.stringify(obj)}: process exited (${this.exitCode})\n${this.describe()}`);
    this.proc.stdin.write(JSON.stringify(obj) + '\n');
  }

  /** Resolves with the first event (from index `after`) for which pred(ev) is true. */
  waitFor(pred, { timeout = 20000, after = 0, what = 'event', failOn = ['fatal'] } = {}) {
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        for (let i = after; i < this.events.length; i++) {
          const ev = this.events[i];
          if (pred(ev)) return finish(null, ev);
          if (failOn.includes(ev.event)) {
            return finish(new Error(`[${this.label}] got ${ev.event} while waiting for ${what}: ${JSON.stringify(ev)}\n${this.describe()}`));
          }
        }
        if (!this.alive()) finish(new Error(`[${this.label}] exited (${this.exitCode}) while waiting for ${what}\n${this.describe()}`));
      };
      const timer = setTimeout(() => finish(new Error(`[${this.label}] no ${what} within ${timeout} ms\n${this.describe()}`)), timeout);
      const finish = (err, ev) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolvePromise(ev);
      };
      this.waiters.add(check);
      check();
    });
  }

  find(pred) {
    return this.events.filter(pred);
  }

  describe(lines = 60) {
    const out = this.raw
      .slice(-lines)
      .map((l) => (l.length > 800 ? l.slice(0, 800) + '...' : l))
      .join('\n');
    return `--- [${this.label}] exit=${this.exitCode} last stdout lines ---\n${out}\n--- [${this.label}] stderr tail ---\n${this.stderr.slice(-3000)}`;
  }

  kill() {
    if (!this.alive()) return;
    try {
      process.kill(-this.proc.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }

  /** Closes stdin (the processes exit on EOF) and kills after `timeout`. */
  async close(timeout = 10000) {
    if (this.alive()) {
      try {
        this.proc.stdin.end();
      } catch {
        /* closed */
      }
      const t = setTimeout(() => this.kill(), timeout);
      await this.exited;
      clearTimeout(t);
    }
    return this.exitCode;
  }
}

/** Headless Chromium (driver.mjs) in the namespace; each command's result is awaited by id. */
export class Browser extends LineProc {
  constructor(label, argv, opts) {
    super(label, argv, opts);
    this.seq = 0;
  }

  async ready(timeout = 60000) {
    return this.waitFor((e) => e.event === 'ready', { timeout, what: 'ready' });
  }

  async command(cmd, fields = {}, timeout = 30000) {
    this.seq += 1;
    const id = `${cmd}-${this.seq}`;
    this.send({ id, cmd, ...fields });
    const res = await this.waitFor((e) => e.event === 'result' && e.id === id, { timeout, what: `result of ${cmd} ${JSON.stringify(fields).slice(0, 200)}` });
    if (!res.ok) throw new Error(`[${this.label}] ${cmd} ${JSON.stringify(fields).slice(0, 300)} failed: ${res.error}\n${this.describe()}`);
    return res.value;
  }

  open(page) {
    return this.command('open', { page }, 45000);
  }

  call(page, fn, args = [], timeout = 30000) {
    return this.command('call', { page, fn, args }, timeout);
  }

  /** Events the page `page` reported (room events, console lines). */
  pageEvents(page, event) {
    return this.events.filter((e) => e.page === page && (!event || e.event === event));
  }

  consoleLog(lines = 80) {
    return this.events
      .filter((e) => e.event === 'console' || e.event === 'pageerror')
      .slice(-lines)
      .map((e) => `[${e.page}] ${e.event === 'pageerror' ? 'PAGEERROR' : e.type}: ${e.text}`)
      .join('\n');
  }

  /** Polls window.lkt[fn](...args) until pred(value) holds; returns the last value either way. */
  async pollUntil(page, fn, args, pred, { timeout = 20000, interval = 500 } = {}) {
    const deadline = Date.now() + timeout;
    const history = [];
    for (;;) {
      const v = await this.call(page, fn, args, Math.max(5000, deadline - Date.now()));
      history.push(v);
      if (pred(v, history)) return { ok: true, value: v, history };
      if (Date.now() >= deadline) return { ok: false, value: v, history };
      await sleep(Math.min(interval, Math.max(0, deadline - Date.now())));
    }
  }
}

// ------------------------------------------------------------------------------ environment

export class BrowserEnv {
  constructor({ rustLog, nsPrefix, serverArgs } = {}) {
    this.ns = new NetNs(nsPrefix || 'lkb');
    this.serverArgs = serverArgs || [];
    this.dir = mkdtempSync(join(tmpdir(), 'lk-browser-'));
    this.logPath = join(this.dir, 'livekit-server.log');
    this.rustLog = rustLog ?? process.env.LK_BROWSER_RUST_LOG ?? 'debug';
    this.server = null;
    this.procs = [];
  }

  async start() {
    this.ns.create();
    try {
      const env = { ...process.env, RUST_BACKTRACE: '1', NO_COLOR: '1', RUST_LOG: this.rustLog };
      for (const v of ['LIVEKIT_KEYS', 'LIVEKIT_CONFIG', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET', 'NODE_IP', 'UDP_PORT']) delete env[v];
      const fd = openSync(this.logPath, 'w');
      const argv = this.ns.argv([
        SERVER_BIN,
        '--keys',
        `${API_KEY}: ${API_SECRET}`,
        '--bind',
        SERVER_IP,
        '--node-ip',
        SERVER_IP,
        '--port',
        String(PORT),
        '--udp-port',
        String(UDP_PORT),
        ...this.serverArgs,
        // LK_BROWSER_SERVER_CONFIG: a YAML config body for the server (e.g. to compare with
        // rtc.congestion_control off), unless the test passes its own
        ...(process.env.LK_BROWSER_SERVER_CONFIG && !this.serverArgs.includes('--config-body')
          ? ['--config-body', process.env.LK_BROWSER_SERVER_CONFIG]
          : []),
      ]);
      this.server = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', fd, fd], detached: true });
      closeSync(fd);
      this.serverExit = undefined;
      this.server.on('exit', (code, sig) => {
        this.serverExit = code === null ? sig : code;
      });
      await this.waitReady(20000);
    } catch (e) {
      this.stopSync();
      throw e;
    }
    return this;
  }

  /** GET / from inside the namespace until the server answers 200 OK. */
  async waitReady(timeout) {
    const deadline = Date.now() + timeout;
    let last = '';
    while (Date.now() < deadline) {
      if (this.serverExit !== undefined) break;
      const probe = this.ns.argv([
        process.execPath,
        '-e',
        `fetch('http://${SERVER_IP}:${PORT}/').then(async r=>{console.log(r.status, await r.text());process.exit(r.ok?0:1)},e=>{console.log(String(e.cause||e));process.exit(1)})`,
      ]);
      const cp = spawnSync(probe[0], probe.slice(1), { encoding: 'utf8', timeout: 5000 });
      last = (cp.stdout || cp.stderr || '').trim();
      if (cp.status === 0) return;
      await sleep(200);
    }
    throw new Error(`livekit-server in netns ${this.ns.name} not ready (exit=${this.serverExit}, last=${last})\n${this.serverLogTail()}`);
  }

  /**
   * Self-check of the tests (LK_BROWSER_BREAK_MEDIA=1): blackholes every UDP packet to or from
   * the server's media port inside the namespace, so media and data stop while signalling goes
   * on; every test must then fail. (lo carries 10.77.0.1 <-> 10.77.0.2 inside the namespace. The
   * kernel here lacks tc's drop action and netem, so matching packets go to an htb class of
   * 8 bit/s with a one-packet queue.)
   */
  breakMedia() {
    const tc = (...a) => run(['ip', 'netns', 'exec', this.ns.name, 'tc', ...a]);
    tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '1');
    this.mediaBroken = true;
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '10gbit');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:2', 'htb', 'rate', '8bit', 'ceil', '8bit', 'burst', '1', 'cburst', '1');
    tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:2', 'handle', '20:', 'pfifo', 'limit', '1');
    for (const dir of ['sport', 'dport']) {
      tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
        'match', 'ip', 'protocol', '17', '0xff', 'match', 'ip', dir, String(UDP_PORT), '0xffff', 'flowid', '1:2');
    }
  }

  restoreMedia() {
    if (!this.mediaBroken) return;
    run(['ip', 'netns', 'exec', this.ns.name, 'tc', 'qdisc', 'del', 'dev', 'lo', 'root'], { check: false });
    this.mediaBroken = false;
  }

  serverAlive() {
    return this.server !== null && this.serverExit === undefined;
  }

  serverLog() {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  serverLogTail(chars = 20000) {
    const t = this.serverLog();
    return t.length <= chars ? t : '...\n' + t.slice(-chars);
  }

  /**
   * The last `n` server log lines written at or after `since` (a Date) that match `re`, each cut
   * to 200 characters: what the server decided meanwhile, for a failure message's first lines.
   */
  serverLinesSince(since, re, n = 15) {
    const from = since.toISOString().slice(0, 23);
    return this.serverLog()
      .split('\n')
      .filter((l) => l.slice(0, 23) >= from && re.test(l))
      .slice(-n)
      .map((l) => l.slice(0, 200));
  }

  /**
   * Server log lines at WARN/ERROR level (or panics), without the DTLS library's warning about
   * the TLS 1.3 extensions (43, 45, 51) in every Chromium/libwebrtc ClientHello.
   */
  serverProblems() {
    return this.serverLog()
      .split('\n')
      .filter((l) => /\b(WARN|ERROR)\b|panicked/.test(l) && !/Unsupported Extension Type/.test(l));
  }

  async token(identity, room, grants = {}, ttl = '10m') {
    const { AccessToken } = require('livekit-server-sdk');
    const at = new AccessToken(API_KEY, API_SECRET, { identity, name: identity, ttl });
    at.addGrant({ roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true, ...grants });
    return at.toJwt();
  }

  /**
   * Runs `body` (Python lines, indented for the inside of `async with`) with `lk`, a
   * `livekit-api` LiveKitAPI of this server, and `a`, the JSON of `args`, from inside the
   * namespace; returns what it printed.
   */
  livekitApi(body, args) {
    const code = [
      'import asyncio, json, sys',
      'from livekit import api',
      'async def main():',
      `    async with api.LiveKitAPI("http://${SERVER_IP}:${PORT}", "${API_KEY}", "${API_SECRET}") as lk:`,
      '        a = json.loads(sys.argv[1])',
      ...body.map((l) => `        ${l}`),
      'asyncio.run(main())',
    ].join('\n');
    const argv = this.ns.argv([PYTHON, '-c', code, JSON.stringify(args)]);
    const cp = spawnSync(argv[0], argv.slice(1), { env: this.clientEnv(), timeout: 30000, encoding: 'utf8' });
    if (cp.status !== 0) throw new Error(`livekit-api call failed (${cp.status}): ${cp.stderr}`);
    return cp.stdout.trim();
  }

  clientEnv() {
    const env = { ...process.env, PYTHONUNBUFFERED: '1' };
    for (const v of ['LIVEKIT_URL', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET', 'RUST_LOG']) delete env[v];
    return env;
  }

  async browser(label = 'chromium', maxSeconds = 240) {
    const b = new Browser(label, this.ns.argv([process.execPath, join(HERE, 'driver.mjs'), '--chromium', CHROMIUM, '--max-seconds', String(maxSeconds)]), {
      env: this.clientEnv(),
    });
    this.procs.push(b);
    await b.ready();
    return b;
  }

  pythonSubscriber(label, args) {
    const p = new LineProc(label, this.ns.argv([PYTHON, join(HERE, 'py_subscriber.py'), ...args]), { env: this.clientEnv() });
    this.procs.push(p);
    return p;
  }

  async closeClients() {
    const procs = this.procs;
    this.procs = [];
    await Promise.all(
      procs.map(async (p) => {
        if (p instanceof Browser && p.alive()) {
          try {
            p.send({ cmd: 'exit' });
          } catch {
            /* gone */
          }
        }
        await p.close(12000);
      }),
    );
  }

  stopSync() {
    for (const p of this.procs) p.kill();
    if (this.server && this.serverExit === undefined) {
      try {
        process.kill(-this.server.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    this.ns.destroySync();
  }

  async cleanup({ keepDir = false } = {}) {
    await this.closeClients();
    if (this.server && this.serverExit === undefined) {
      try {
        process.kill(-this.server.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const deadline = Date.now() + 5000;
      while (this.serverExit === undefined && Date.now() < deadline) await sleep(50);
    }
    this.ns.destroySync();
    if (!keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Text for a failure message: server log tail, warnings and every client's output. */
  diagnostics(chars = 12000) {
    const parts = [`=== livekit-server (netns ${this.ns.name}, RUST_LOG=${this.rustLog}) WARN/ERROR lines ===`];
    parts.push(this.serverProblems().slice(-60).join('\n') || '<none>');
    parts.push(`=== livekit-server log tail ===\n${this.serverLogTail(chars)}`);
    for (const p of this.procs) {
      parts.push(p instanceof Browser ? `=== ${p.label} console ===\n${p.consoleLog()}\n${p.describe(40)}` : p.describe(60));
    }
    return parts.join('\n');
  }
}

export { sleep };

/**
 * Registers, in the calling `describe`, the hooks of a suite with one server and one Chromium:
 * `before` starts a `BrowserEnv` and its browser and hands both to `ready(env, browser)`;
 * whatever happens to the process (exit, SIGINT, SIGTERM) leaves no namespace and no processes
 * behind; `after` cleans up, keeping the server log and the browser's events when
 * LK_BROWSER_KEEP_LOGS=1 (the server logs at debug level by default).
 */
export function browserSuite(ready, label = 'chromium') {
  let env = null;
  let browser = null;
  before(async () => {
    env = new BrowserEnv();
    process.once('exit', () => env && env.stopSync());
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.once(sig, () => {
        if (env) env.stopSync();
        process.exit(130);
      });
    }
    await env.start();
    browser = await env.browser(label);
    ready(env, browser);
  }, { timeout: 90000 });

  after(async () => {
    if (!env) return;
    const keep = process.env.LK_BROWSER_KEEP_LOGS === '1';
    if (keep && browser) writeFileSync(`${env.dir}/browser-events.jsonl`, browser.events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    await env.cleanup({ keepDir: keep });
    if (keep) console.log(`# logs kept in ${env.dir} (livekit-server.log, browser-events.jsonl)`);
  });
}

/**
 * Opens `page` in browser `b` and connects it to `room` as `identity` (a token from `env`)
 * with livekit-client room options `roomOptions`; fails unless it connected as `identity`.
 */
export async function connectPage(env, b, page, identity, room, roomOptions = {}) {
  await b.open(page);
  const tok = await env.token(identity, room);
  const info = await b.call(page, 'connect', [WS_URL, tok, roomOptions], 30000);
  if (!info || info.identity !== identity) throw new Error(`page ${page} connected as ${JSON.stringify(info)}, not ${identity}`);
  return info;
}

/** Disconnects and closes pages of browser `b`; a page broken already is just closed. */
export async function closePages(b, ...pages) {
  for (const p of pages) {
    try {
      await b.call(p, 'disconnect', [], 10000);
    } catch {
      /* broken already; closing the context is enough */
    }
    await b.command('close', { page: p }, 15000);
  }
}

/** Runs a test body; a failure's message gets the environment's diagnostics (server log,
 * browser console) appended. */
export async function withEnvDiagnostics(env, fn) {
  try {
    await fn();
  } catch (e) {
    const diag = env ? env.diagnostics() : '';
    if (e && typeof e === 'object') {
      e.message = `${e.message}\n\n${diag}`;
      throw e;
    }
    throw new Error(`${e}\n\n${diag}`);
  }
}
