// A real-time LiveKit client (the unmodified `@livekit/rtc-node` SDK) driven over stdin/stdout,
// speaking the same JSON-lines protocol as tests/interop/python/media/rtc_client.py:
//
//   node rtc_client.mjs --url ws://10.77.0.1:7880 --token JWT [--max-seconds 60]
//
// Commands (one JSON object per stdin line; an optional "id" is echoed in the result):
//   {"cmd":"publish_audio","name":"tone","freq":600}             -> published
//   {"cmd":"unpublish","name":"tone"}                            -> unpublished
//   {"cmd":"analyze_audio","participant":"py","seconds":1}       -> audio_analysis
//   {"cmd":"disconnect"}                                         -> closed, then exit
// Room events are reported as {"event": ...} lines (connected, connect_error, participant_connected,
// participant_disconnected, track_published, track_subscribed, track_unsubscribed, track_muted,
// track_unmuted, track_unpublished, disconnected). It exits on its own after --max-seconds, on
// stdin EOF, or when the room disconnects.
//
// Not a test file itself (node --test does not pick it up): the Python media tests run it inside
// their network namespace.
import { createInterface } from 'node:readline';
import {
  AudioFrame,
  AudioSource,
  AudioStream,
  DisconnectReason,
  LocalAudioTrack,
  Room,
  RoomEvent,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  dispose,
} from '@livekit/rtc-node';

const RATE = 48000;
const AMPLITUDE = 12000;
const SILENCE_PEAK = 800;
const KEEP_SAMPLES = 5 * RATE;

function parseArgs(argv) {
  const out = { maxSeconds: 60, connectTimeout: 15 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--url') out.url = v;
    else if (k === '--token') out.token = v;
    else if (k === '--max-seconds') out.maxSeconds = Number(v);
    else if (k === '--connect-timeout') out.connectTimeout = Number(v);
  }
  if (!out.url || !out.token) {
    process.stderr.write('usage: rtc_client.mjs --url URL --token JWT [--max-seconds N]\n');
    process.exit(2);
  }
  return out;
}

function emit(event, fields = {}) {
  process.stdout.write(
    JSON.stringify({ event, t: Math.round(performance.now()) / 1000, ...fields }) + '\n',
  );
}

const kindName = (k) => (k === TrackKind.KIND_AUDIO ? 'audio' : k === TrackKind.KIND_VIDEO ? 'video' : String(k));
const sourceName = (s) => TrackSource[s] ?? String(s);

// ------------------------------------------------------------------ analysis

function fftMag(re) {
  // in-place iterative radix-2 FFT of a real signal (length a power of two); returns |X[k]|, k <= n/2
  const n = re.length;
  const im = new Float64Array(n);
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      const t = re[i];
      re[i] = re[j];
      re[j] = t;
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    const wr = Math.cos(ang);
    const wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const ar = re[i + k];
        const ai = im[i + k];
        const br = re[i + k + len / 2] * cr - im[i + k + len / 2] * ci;
        const bi = re[i + k + len / 2] * ci + im[i + k + len / 2] * cr;
        re[i + k] = ar + br;
        im[i + k] = ai + bi;
        re[i + k + len / 2] = ar - br;
        im[i + k + len / 2] = ai - bi;
        const ncr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = ncr;
      }
    }
  }
  const mag = new Float64Array(n / 2 + 1);
  for (let k = 0; k <= n / 2; k++) mag[k] = Math.hypot(re[k], im[k]);
  return mag;
}

function analyzeTone(samples) {
  let n = 1;
  while (n * 2 <= samples.length) n *= 2;
  const x = samples.subarray(samples.length - n);
  let sq = 0;
  for (let i = 0; i < n; i++) sq += x[i] * x[i];
  const rms = Math.sqrt(sq / n);
  if (n < 1024 || rms === 0) return { freq: null, rms, purity: 0, samples: samples.length };
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = x[i] * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
  const mag = fftMag(w);
  let k = 1;
  for (let i = 2; i < mag.length; i++) if (mag[i] > mag[k]) k = i;
  let delta = 0;
  if (k >= 1 && k < mag.length - 1) {
    const a = Math.log(mag[k - 1] + 1e-9);
    const b = Math.log(mag[k] + 1e-9);
    const c = Math.log(mag[k + 1] + 1e-9);
    const d = a - 2 * b + c;
    delta = d !== 0 ? (0.5 * (a - c)) / d : 0;
  }
  const binHz = RATE / n;
  const half = Math.max(2, Math.ceil(15 / binHz));
  let band = 0;
  let total = 0;
  for (let i = 1; i < mag.length; i++) {
    const p = mag[i] * mag[i];
    total += p;
    if (i >= k - half && i <= k + half) band += p;
  }
  return {
    freq: Math.round((k + delta) * binHz * 100) / 100,
    rms: Math.round(rms * 10) / 10,
    purity: total ? Math.round((band / total) * 10000) / 10000 : 0,
    samples: n,
  };
}

class AudioReceiver {
  constructor(track, identity) {
    this.identity = identity;
    this.chunks = [];
    this.kept = 0;
    this.total = 0;
    this.frames = 0;
    this.started = false;
    this.waiters = new Set();
    this.stream = new AudioStream(track, { sampleRate: RATE, numChannels: 1 });
    this.task = this.run().catch((e) => emit('receiver_error', { participant: identity, error: String(e) }));
  }

  async run() {
    for await (const frame of this.stream) {
      const d = Int16Array.from(frame.data);
      this.frames++;
      if (!this.started) {
        let peak = 0;
        for (let i = 0; i < d.length; i++) peak = Math.max(peak, Math.abs(d[i]));
        if (peak < SILENCE_PEAK) continue;
        this.started = true;
      }
      this.chunks.push(d);
      this.kept += d.length;
      this.total += d.length;
      while (this.chunks.length && this.kept - this.chunks[0].length >= KEEP_SAMPLES) {
        this.kept -= this.chunks.shift().length;
      }
      for (const w of this.waiters) w();
    }
  }

  async collect(seconds, deadline) {
    const need = Math.floor(seconds * RATE);
    const start = this.total;
    while (this.total < start + need) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
    const all = new Float64Array(this.kept);
    let off = 0;
    for (const c of this.chunks) {
      all.set(c, off);
      off += c.length;
    }
    return all.subarray(all.length - need);
  }
}

// ------------------------------------------------------------------ client

const args = parseArgs(process.argv);
const room = new Room();
const local = new Map(); // name -> { track, pub, source, stop }
const audioRx = new Map(); // identity -> AudioReceiver
const rxWaiters = new Set();
let finish;
const done = new Promise((resolve) => (finish = resolve));

room
  .on(RoomEvent.ParticipantConnected, (p) => emit('participant_connected', { participant: p.identity, sid: p.sid }))
  .on(RoomEvent.ParticipantDisconnected, (p) =>
    emit('participant_disconnected', { participant: p.identity, sid: p.sid }),
  )
  .on(RoomEvent.TrackPublished, (pub, p) =>
    emit('track_published', { participant: p.identity, sid: pub.sid, name: pub.name, kind: kindName(pub.kind) }),
  )
  .on(RoomEvent.TrackSubscribed, (track, pub, p) => {
    const kind = kindName(track.kind);
    emit('track_subscribed', {
      participant: p.identity,
      sid: pub.sid,
      name: pub.name,
      kind,
      source: sourceName(pub.source),
      mime: pub.mimeType,
    });
    if (kind === 'audio') {
      audioRx.set(p.identity, new AudioReceiver(track, p.identity));
      for (const w of rxWaiters) w();
    }
  })
  .on(RoomEvent.TrackUnsubscribed, (track, pub, p) =>
    emit('track_unsubscribed', { participant: p.identity, sid: pub.sid, name: pub.name, kind: kindName(track.kind) }),
  )
  .on(RoomEvent.TrackUnpublished, (pub, p) =>
    emit('track_unpublished', { participant: p.identity, sid: pub.sid, name: pub.name, kind: kindName(pub.kind) }),
  )
  .on(RoomEvent.TrackMuted, (pub, p) =>
    emit('track_muted', { participant: p.identity, sid: pub.sid, name: pub.name, kind: kindName(pub.kind) }),
  )
  .on(RoomEvent.TrackUnmuted, (pub, p) =>
    emit('track_unmuted', { participant: p.identity, sid: pub.sid, name: pub.name, kind: kindName(pub.kind) }),
  )
  .on(RoomEvent.Disconnected, (reason) => {
    emit('disconnected', { reason, reason_name: DisconnectReason[reason] ?? String(reason) });
    finish();
  });

async function toneLoop(source, freq, state) {
  const n = RATE / 100;
  let t = 0;
  while (!state.stopped) {
    const frame = AudioFrame.create(RATE, 1, n);
    for (let i = 0; i < n; i++, t++) {
      frame.data[i] = Math.round(AMPLITUDE * Math.sin((2 * Math.PI * freq * t) / RATE));
    }
    await source.captureFrame(frame);
  }
}

const commands = {
  async publish_audio(c) {
    const name = c.name ?? 'tone';
    const source = new AudioSource(RATE, 1);
    const track = LocalAudioTrack.createAudioTrack(name, source);
    const state = { stopped: false };
    const loop = toneLoop(source, Number(c.freq ?? 440), state).catch((e) => {
      if (!state.stopped) emit('publisher_error', { name, error: String(e) });
    });
    const opts = new TrackPublishOptions();
    opts.source = TrackSource.SOURCE_MICROPHONE;
    const pub = await room.localParticipant.publishTrack(track, opts);
    local.set(name, { track, pub, source, state, loop });
    return ['published', { name, sid: pub.sid, kind: 'audio' }];
  },

  async unpublish(c) {
    const name = c.name ?? 'tone';
    const lt = local.get(name);
    if (!lt) throw new Error(`no local track named ${name}`);
    lt.state.stopped = true;
    await room.localParticipant.unpublishTrack(lt.pub.sid);
    local.delete(name);
    return ['unpublished', { name, sid: lt.pub.sid }];
  },

  async analyze_audio(c) {
    const who = c.participant;
    const deadline = Date.now() + 1000 * Number(c.timeout ?? 15);
    while (!audioRx.has(who)) {
      const left = deadline - Date.now();
      if (left <= 0) return ['audio_analysis', { participant: who, error: 'no audio track subscribed from this participant' }];
      await new Promise((resolve) => {
        const w = () => {
          clearTimeout(timer);
          rxWaiters.delete(w);
          resolve();
        };
        const timer = setTimeout(w, left);
        rxWaiters.add(w);
      });
    }
    const rx = audioRx.get(who);
    const x = await rx.collect(Number(c.seconds ?? 1), deadline);
    if (!x) {
      return [
        'audio_analysis',
        {
          participant: who,
          error: 'not enough audio before the deadline',
          frames: rx.frames,
          tone_started: rx.started,
          samples_since_tone: rx.total,
        },
      ];
    }
    return ['audio_analysis', { participant: who, frames: rx.frames, ...analyzeTone(x) }];
  },

  async disconnect() {
    finish();
    return ['disconnecting', {}];
  },
};

async function handle(c) {
  const fn = commands[c.cmd];
  if (!fn) {
    emit('command_error', { cmd: c.cmd, id: c.id, error: 'unknown command' });
    return;
  }
  try {
    const [event, fields] = await fn(c);
    emit(event, { id: c.id, ...fields });
  } catch (e) {
    emit('command_error', { cmd: c.cmd, id: c.id, error: String(e?.stack ?? e) });
  }
}

async function main() {
  try {
    await Promise.race([
      room.connect(args.url, args.token, { autoSubscribe: true, dynacast: false }),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`connect timed out after ${args.connectTimeout}s`)), args.connectTimeout * 1000),
      ),
    ]);
  } catch (e) {
    emit('connect_error', { error: String(e?.message ?? e), type: e?.constructor?.name ?? typeof e });
    return 3;
  }
  const lp = room.localParticipant;
  emit('connected', {
    identity: lp.identity,
    sid: lp.sid,
    room: room.name,
    remote: [...room.remoteParticipants.keys()].sort(),
  });

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    line = line.trim();
    if (!line) return;
    let c;
    try {
      c = JSON.parse(line);
    } catch {
      emit('command_error', { error: `not JSON: ${line.slice(0, 200)}` });
      return;
    }
    handle(c);
  });
  rl.on('close', () => {
    emit('stdin_closed');
    finish();
  });

  const lifetime = setTimeout(() => {
    emit('lifetime_expired', { seconds: args.maxSeconds });
    finish();
  }, args.maxSeconds * 1000);
  await done;
  clearTimeout(lifetime);
  rl.close();
  for (const lt of local.values()) lt.state.stopped = true;
  try {
    await Promise.race([room.disconnect(), new Promise((r) => setTimeout(r, 5000))]);
  } catch (e) {
    emit('disconnect_error', { error: String(e) });
  }
  emit('closed');
  return 0;
}

let rc = 1;
try {
  rc = await main();
} catch (e) {
  emit('fatal', { error: String(e?.stack ?? e) });
}
try {
  await Promise.race([dispose(), new Promise((r) => setTimeout(r, 2000))]);
} catch {
  // exiting anyway
}
process.exit(rc);
