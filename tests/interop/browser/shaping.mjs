// Network impairments for the adaptive-media browser tests (adaptive.test.mjs).
//
// This kernel has no netem qdisc, so:
//   - random packet loss comes from nftables (`numgen random mod 100 lt N drop`) in the
//     server's namespace (`PacketLoss`);
//   - a bandwidth cap is a tbf qdisc on a veth end (`LinkedNs.capBandwidth`).
//
// Inside one namespace traffic between its own addresses goes over `lo`, so a subscriber whose
// path alone is to be shaped runs in a SECOND namespace (`LinkedNs`), joined to the server's
// namespace by a veth pair: server side `s1` 10.77.<n>.1/24, subscriber side `s2` 10.77.<n>.2/24
// with a route to 10.77.0.0/24 (where the server listens) via 10.77.<n>.1. A tbf on `s1` in the
// server's namespace shapes only what the server sends to that subscriber.
//
// Nothing here talks to anything but 127.0.0.0/8 and addresses inside namespaces it created.
// Every namespace is deleted by destroySync() (the tests call it in finally blocks and on exit).

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { Browser, CHROMIUM, HERE, UDP_PORT } from './harness.mjs';

let linkCounter = 0;

function run(argv, { check = true, timeout = 15000 } = {}) {
  const cp = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
  if (check && cp.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (${cp.status}${cp.error ? ' ' + cp.error.message : ''}): ${(cp.stderr || cp.stdout || '').trim()}`);
  }
  return cp;
}

/** Why the impairment tests cannot run here (null if they can). */
export function shapingPrerequisites() {
  if (run(['nft', '--version'], { check: false }).status !== 0) return 'nft (nftables) is not installed (apt-get install nftables)';
  if (run(['tc', '-V'], { check: false }).status !== 0) return 'tc (iproute2) is not installed';
  return null;
}

/**
 * Random loss of UDP packets from and/or to the server's media port, by nftables in the
 * server's namespace, for clients that run in that namespace too. The packets are dropped on
 * their way IN (the input hook), as a lossy network would: a drop in the output hook makes the
 * sender's sendto() fail with EPERM, and Chromium then sends the packet again, so most of the
 * "loss" would never happen.
 */
export class PacketLoss {
  constructor(ns) {
    this.ns = ns; // a harness NetNs
    this.table = null;
  }

  nft(...args) {
    return run(['ip', 'netns', 'exec', this.ns.name, 'nft', ...args]);
  }

  /** Drops `downPercent`% of the server's outgoing media and `upPercent`% of its incoming. */
  apply({ downPercent = 0, upPercent = 0 } = {}) {
    this.clear();
    this.table = 'lkloss';
    this.nft('add', 'table', 'inet', this.table);
    this.nft('add', 'chain', 'inet', this.table, 'in', '{ type filter hook input priority 0; policy accept; }');
    this.nft('add', 'counter', 'inet', this.table, 'down');
    this.nft('add', 'counter', 'inet', this.table, 'up');
    this.nft('add', 'counter', 'inet', this.table, 'nacks');
    if (downPercent > 0) {
      this.nft('add', 'rule', 'inet', this.table, 'in', 'udp', 'sport', String(UDP_PORT), 'numgen', 'random', 'mod', '100', 'lt', String(downPercent), 'counter', 'name', 'down', 'drop');
    }
    if (upPercent > 0) {
      this.nft('add', 'rule', 'inet', this.table, 'in', 'udp', 'dport', String(UDP_PORT), 'numgen', 'random', 'mod', '100', 'lt', String(upPercent), 'counter', 'name', 'up', 'drop');
    }
  }

  /**
   * Self-check of the tests: also drops every RTCP packet to the server that carries a generic
   * NACK, so that the server never hears of downstream loss (nor of anything else the clients
   * put behind a receiver report, e.g. PLIs).
   */
  blockNacksToServer() {
    if (!this.table) this.apply({});
    const rule = (...m) => this.nft('add', 'rule', 'inet', this.table, 'in', 'udp', 'dport', String(UDP_PORT), ...m, 'counter', 'name', 'nacks', 'drop');
    rule('@th,64,16', '0x81cd'); // a NACK on its own
    // SRTCP encrypts all but the first 8 bytes, so a NACK behind a receiver report (in
    // single-PC mode Chromium sends them as RR + NACK compounds) is recognised by size: longer
    // than the periodic report (RR with up to two blocks: 56 bytes + 14 of SRTCP + 8 of UDP)
    rule('@th,72,8', '201', 'udp', 'length', '>', '78');
  }

  /** Packets dropped so far: {down, up} (and {nacks} once blockNacksToServer ran). */
  dropped() {
    if (!this.table) return { down: 0, up: 0, nacks: 0 };
    const out = {};
    for (const c of ['down', 'up', 'nacks']) {
      const cp = run(['ip', 'netns', 'exec', this.ns.name, 'nft', 'list', 'counter', 'inet', this.table, c], { check: false });
      const m = /packets (\d+)/.exec(cp.stdout || '');
      out[c] = m ? Number(m[1]) : 0;
    }
    return out;
  }

  clear() {
    if (!this.table) return;
    run(['ip', 'netns', 'exec', this.ns.name, 'nft', 'delete', 'table', 'inet', this.table], { check: false });
    this.table = null;
  }
}

/**
 * A second namespace for one client, joined to the server's namespace (`serverNs`, a harness
 * NetNs) by a veth pair, so that a tbf on the server's end shapes only this client's downlink.
 */
export class LinkedNs {
  constructor(serverNs) {
    linkCounter += 1;
    this.serverNs = serverNs;
    this.index = linkCounter; // 10.77.<index>.0/24; 10.77.0.0/24 is the server's
    this.name = `lks${process.pid}x${linkCounter}`;
    this.serverIf = `s${linkCounter}a`;
    this.clientIf = `s${linkCounter}b`;
    this.serverSideIp = `10.77.${this.index}.1`;
    this.ip = `10.77.${this.index}.2`;
    this.created = false;
    this.shaped = false;
  }

  create() {
    const n = this.name;
    const s = this.serverNs.name;
    run(['ip', 'netns', 'add', n]);
    this.created = true;
    try {
      run(['ip', '-n', n, 'link', 'set', 'lo', 'up']);
      // create the pair in the client's namespace and move one end into the server's
      run(['ip', '-n', n, 'link', 'add', this.clientIf, 'type', 'veth', 'peer', 'name', this.serverIf]);
      run(['ip', '-n', n, 'link', 'set', this.serverIf, 'netns', s]);
      run(['ip', '-n', n, 'addr', 'add', `${this.ip}/24`, 'dev', this.clientIf]);
      run(['ip', '-n', n, 'link', 'set', this.clientIf, 'up']);
      run(['ip', '-n', s, 'addr', 'add', `${this.serverSideIp}/24`, 'dev', this.serverIf]);
      run(['ip', '-n', s, 'link', 'set', this.serverIf, 'up']);
      run(['ip', '-n', n, 'route', 'add', '10.77.0.0/24', 'via', this.serverSideIp]);
    } catch (e) {
      this.destroySync();
      throw e;
    }
    return this;
  }

  argv(cmd) {
    return ['ip', 'netns', 'exec', this.name, ...cmd];
  }

  /** Headless Chromium (driver.mjs) in this namespace, registered with `env` for cleanup. */
  async browser(env, label, maxSeconds = 240) {
    const b = new Browser(label, this.argv([process.execPath, join(HERE, 'driver.mjs'), '--chromium', CHROMIUM, '--max-seconds', String(maxSeconds)]), {
      env: env.clientEnv(),
    });
    env.procs.push(b);
    await b.ready();
    return b;
  }

  /** Caps what the server sends to this namespace at `rate` (tc syntax, e.g. "300kbit"). */
  capBandwidth(rate, { burst = '8kb', latency = '100ms' } = {}) {
    const tc = ['ip', 'netns', 'exec', this.serverNs.name, 'tc', 'qdisc'];
    run([...tc, this.shaped ? 'change' : 'add', 'dev', this.serverIf, 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency]);
    this.shaped = true;
  }

  /** Statistics of the tbf (sent/dropped packets), as text. */
  capStats() {
    const cp = run(['ip', 'netns', 'exec', this.serverNs.name, 'tc', '-s', 'qdisc', 'show', 'dev', this.serverIf], { check: false });
    return (cp.stdout || cp.stderr || '').trim();
  }

  uncap() {
    if (!this.shaped) return;
    run(['ip', 'netns', 'exec', this.serverNs.name, 'tc', 'qdisc', 'del', 'dev', this.serverIf, 'root'], { check: false });
    this.shaped = false;
  }

  pids() {
    const cp = run(['ip', 'netns', 'pids', this.name], { check: false });
    return (cp.stdout || '').split(/\s+/).filter((x) => /^\d+$/.test(x)).map(Number);
  }

  /** Kills whatever still runs in the namespace, deletes it (and with it the veth pair). */
  destroySync() {
    if (!this.created) return;
    for (const sig of ['SIGTERM', 'SIGKILL']) {
      const pids = this.pids();
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
    // the server's end goes with the pair; delete it explicitly in case the namespace lingered
    if (this.serverNs.created) run(['ip', '-n', this.serverNs.name, 'link', 'del', this.serverIf], { check: false });
    this.created = false;
    this.shaped = false;
  }
}
