'use strict';
// Shared helpers for the Node interop suite: start/stop a livekit-server on free
// loopback ports, raw Twirp over fetch, hand-made JWTs, running livekit-cli.

const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const SERVER_BIN =
  process.env.LIVEKIT_SERVER_BIN || path.join(REPO_ROOT, 'target', 'debug', 'livekit-server');
const CLI_BIN = process.env.LIVEKIT_CLI_BIN || path.join(REPO_ROOT, 'target', 'debug', 'livekit-cli');
const HOST = '127.0.0.1';
const API_KEY = 'devkey';
const API_SECRET = 'secret';
const READY_DEADLINE_MS = 20000;
const LOG_TAIL_CHARS = 12000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function freeUdpPort(avoid = []) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, HOST, () => {
      const { port } = sock.address();
      sock.close(() => {
        if (avoid.includes(port)) freeUdpPort(avoid).then(resolve, reject);
        else resolve(port);
      });
    });
  });
}

function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const v of ['LIVEKIT_KEYS', 'LIVEKIT_CONFIG', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET', 'LIVEKIT_URL']) {
    delete env[v];
  }
  return { RUST_BACKTRACE: '1', NO_COLOR: '1', ...env, ...extra };
}

class LiveKitServer {
  constructor(extraArgs) {
    this.extraArgs = extraArgs;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-interop-node-'));
    this.proc = null;
    this.exited = null;
  }

  get url() {
    return `http://${HOST}:${this.port}`;
  }

  argv() {
    return [...this.extraArgs, '--bind', HOST, '--port', String(this.port), '--udp-port', String(this.udpPort)];
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  logTail() {
    const text = this.log();
    return text.length > LOG_TAIL_CHARS ? '...\n' + text.slice(-LOG_TAIL_CHARS) : text;
  }

  async spawnOnce() {
    this.port = await freeTcpPort();
    this.udpPort = await freeUdpPort([this.port]);
    this.logPath = path.join(this.dir, `livekit-server-${this.port}.log`);
    const fd = fs.openSync(this.logPath, 'w');
    try {
      this.proc = spawn(SERVER_BIN, this.argv(), { stdio: ['ignore', fd, fd], env: cleanEnv() });
    } finally {
      fs.closeSync(fd);
    }
    this.exited = null;
    this.exitPromise = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      });
      this.proc.once('error', (err) => {
        this.exited = { code: null, signal: null, error: err };
        resolve(this.exited);
      });
    });
  }

  async waitReady() {
    const deadline = Date.now() + READY_DEADLINE_MS;
    let last = 'no attempt yet';
    while (Date.now() < deadline) {
      if (this.exited) {
        throw new Error(
          `livekit-server exited (${JSON.stringify(this.exited)}) before becoming ready\n` +
            `argv: ${SERVER_BIN} ${this.argv().join(' ')}\n--- server output ---\n${this.logTail()}`,
        );
      }
      try {
        const res = await fetch(`${this.url}/`, { signal: AbortSignal.timeout(2000) });
        const body = await res.text();
        if (res.status === 200 && body.trim() === 'OK') return;
        last = `GET / -> ${res.status} ${JSON.stringify(body.slice(0, 200))}`;
      } catch (e) {
        last = `GET / -> ${e.cause?.code || e.message}`;
      }
      await sleep(100);
    }
    throw new Error(
      `livekit-server not ready within ${READY_DEADLINE_MS} ms (last: ${last})\n` +
        `argv: ${SERVER_BIN} ${this.argv().join(' ')}\n--- server output ---\n${this.logTail()}`,
    );
  }

  async start(attempts = 3) {
    if (!fs.existsSync(SERVER_BIN)) {
      throw new Error(`server binary not found: ${SERVER_BIN} (run \`cargo build --bins\`)`);
    }
    let lastErr;
    for (let i = 0; i < attempts; i += 1) {
      await this.spawnOnce();
      try {
        await this.waitReady();
        return this;
      } catch (e) {
        lastErr = e;
        await this.stop();
        if (!/in use/i.test(this.log())) break;
      }
    }
    throw lastErr;
  }

  async stop() {
    const p = this.proc;
    if (!p) return;
    if (!this.exited) {
      p.kill('SIGTERM');
      const t = setTimeout(() => {
        if (!this.exited) p.kill('SIGKILL');
      }, 5000);
      await this.exitPromise;
      clearTimeout(t);
    }
    this.proc = null;
  }

  async cleanup() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function startServer(extraArgs = ['--keys', `${API_KEY}: ${API_SECRET}`]) {
  const srv = new LiveKitServer(extraArgs);
  try {
    return await srv.start();
  } catch (e) {
    await srv.cleanup();
    throw e;
  }
}

/**
 * Starts one server for the calling test file (before/after hooks) and returns
 * { srv(), test(name, fn) } where test() appends the server log to failures.
 */
function serverSuite() {
  const { before, after } = require('node:test');
  let server = null;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    if (server) await server.cleanup();
  });
  const wrapped = (name, fn) =>
    test(name, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        if (server && e && typeof e === 'object') {
          try {
            e.message = `${e.message}\n--- livekit-server log (port ${server.port}) ---\n${server.logTail()}`;
          } catch {
            /* read-only message: leave it */
          }
        }
        throw e;
      }
    });
  return { srv: () => server, test: wrapped };
}

// ------------------------------------------------------------------ JWT by hand

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function makeJwt(claims, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  if (header.alg === 'none') return `${input}.`;
  const sig = crypto.createHmac('sha256', secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

function apiToken(video, { key = API_KEY, secret = API_SECRET, ttl = 600, nbfOffset = 0, exp = true } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: key, sub: '', nbf: now + nbfOffset };
  if (exp) claims.exp = now + ttl;
  if (video) claims.video = video;
  return makeJwt(claims, secret);
}

function decodeJwtPayload(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

// ------------------------------------------------------------------ raw Twirp

async function twirp(base, method, body, { token, contentType = 'application/json', service = 'livekit.RoomService', httpMethod = 'POST' } = {}) {
  const headers = {};
  if (contentType) headers['Content-Type'] = contentType;
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method: httpMethod, headers, signal: AbortSignal.timeout(10000) };
  if (httpMethod !== 'GET' && httpMethod !== 'HEAD' && body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  }
  const res = await fetch(`${base}/twirp/${service}/${method}`, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type') || '', text, json };
}

function describeResp(r) {
  return `HTTP ${r.status} content-type=${JSON.stringify(r.contentType)} body=${JSON.stringify(r.text.slice(0, 500))}`;
}

// ------------------------------------------------------------------ CLI

function runCli(args, { env = {}, timeout = 30000 } = {}) {
  const r = spawnSync(CLI_BIN, args, { encoding: 'utf8', timeout, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    status: r.status,
    signal: r.signal,
    error: r.error,
    stdout: r.stdout || '',
    stderr: r.stderr || '',
    describe() {
      return `argv=${JSON.stringify([CLI_BIN, ...args])}\nexit=${r.status} signal=${r.signal} error=${r.error}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
    },
  };
}

function unique(prefix = 'room') {
  return `${prefix}-${crypto.randomBytes(5).toString('hex')}`;
}

module.exports = {
  API_KEY,
  API_SECRET,
  CLI_BIN,
  HOST,
  SERVER_BIN,
  apiToken,
  decodeJwtPayload,
  describeResp,
  makeJwt,
  runCli,
  serverSuite,
  sleep,
  startServer,
  twirp,
  unique,
};
