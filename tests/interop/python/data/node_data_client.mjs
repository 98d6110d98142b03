// A real-time client (the unmodified `@livekit/rtc-node` SDK) for the data tests, speaking the
// JSON-lines protocol of tests/interop/python/media/rtc_client.py (data subset):
//
//   node node_data_client.mjs --url ws://10.77.0.1:7880 --token JWT [--max-seconds 60] [--single-pc 1|0]
//
// Commands (one JSON object per stdin line; an optional "id" is echoed in the result):
//   {"cmd":"publish_data","text":"hi" | "size":60000,"seed":1,"reliable":true,"topic":"t",
//    "destination_identities":["py"]}                                   -> data_published {size, sha256}
//   {"cmd":"send_text","text" | "size"+"seed","topic","destination_identities","attributes"} -> text_sent
//   {"cmd":"register_text_stream","topic":"t"}                         -> stream_handler_registered
//   {"cmd":"register_rpc","method":"m","behavior":"echo"|"error","code","message","data"} -> rpc_registered
//   {"cmd":"perform_rpc","destination":"py","method":"m","payload":"p","response_timeout":10} -> rpc_result
//   {"cmd":"disconnect"}                                               -> closed, then exit
// Events: connected, connect_error, participant_connected, participant_disconnected,
// data_received {participant, kind, topic, size, sha256, text}, stream_opened,
// text_stream_received, rpc_invoked, participant_metadata_changed, disconnected, closed.
//
// `@livekit/rtc-node` resolves from tests/interop/node_modules (node walks up from this file).
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { DataPacketKind, DisconnectReason, Room, RoomEvent, RpcError, dispose } from '@livekit/rtc-node';

function parseArgs(argv) {
  const out = { maxSeconds: 60, connectTimeout: 15, singlePc: undefined };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--url') out.url = v;
    else if (k === '--token') out.token = v;
    else if (k === '--max-seconds') out.maxSeconds = Number(v);
    else if (k === '--connect-timeout') out.connectTimeout = Number(v);
    else if (k === '--single-pc') out.singlePc = !['0', 'false', 'False'].includes(v);
  }
  if (!out.url || !out.token) {
    process.stderr.write('usage: node_data_client.mjs --url URL --token JWT [--max-seconds N] [--single-pc 1|0]\n');
    process.exit(2);
  }
  return out;
}

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, t: Math.round(performance.now()) / 1000, ...fields }) + '\n');
}

// the same generators as rtc_client.py (make_payload / make_text)
function makePayload(size, seed = 0) {
  const block = new Uint8Array(4096);
  for (let i = 0; i < 4096; i++) block[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff;
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = block[i % 4096];
  return out;
}

function makeText(size, seed = 0) {
  const parts = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line = `${String(seed).padStart(3, '0')}:${String(i).padStart(7, '0')}:the quick brown fox jumps over the lazy dog\n`;
    parts.push(line);
    n += line.length;
  }
  return parts.join('').slice(0, size);
}

const enc = new TextEncoder();
const digest = (bytes) => ({ size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
const preview = (bytes, limit = 1000) => (bytes.length <= limit ? new TextDecoder().decode(bytes) : null);
const payloadOf = (c) => ('text' in c ? enc.encode(String(c.text)) : makePayload(Number(c.size), Number(c.seed ?? 0)));
const textOf = (c) => ('text' in c ? String(c.text) : makeText(Number(c.size), Number(c.seed ?? 0)));
const dest = (c) => (c.destination_identities && c.destination_identities.length ? c.destination_identities : undefined);

const args = parseArgs(process.argv);
const room = new Room();
let finish;
const done = new Promise((resolve) => (finish = resolve));

room
  .on(RoomEvent.ParticipantConnected, (p) => emit('participant_connected', { participant: p.identity, sid: p.sid }))
  .on(RoomEvent.ParticipantDisconnected, (p) => emit('participant_disconnected', { participant: p.identity, sid: p.sid }))
  .on(RoomEvent.DataReceived, (payload, participant, kind, topic) => {
    const bytes = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
    emit('data_received', {
      participant: participant ? participant.identity : null,
      kind: kind === DataPacketKind.KIND_RELIABLE ? 'reliable' : kind === DataPacketKind.KIND_LOSSY ? 'lossy' : String(kind),
      topic: topic ?? null,
      text: preview(bytes),
      ...digest(bytes),
    });
  })
  .on(RoomEvent.ParticipantMetadataChanged, (metadata, p) =>
    emit('participant_metadata_changed', { participant: p?.identity ?? null, new: metadata ?? null }),
  )
  .on(RoomEvent.Disconnected, (reason) => {
    emit('disconnected', { reason, reason_name: DisconnectReason[reason] ?? String(reason) });
    finish();
  });

const commands = {
  async publish_data(c) {
    const data = payloadOf(c);
    await room.localParticipant.publishData(data, {
      reliable: c.reliable ?? true,
      topic: c.topic ?? '',
      destination_identities: c.destination_identities ?? [],
    });
    return ['data_published', digest(data)];
  },

  async send_text(c) {
    const text = textOf(c);
    const info = await room.localParticipant.sendText(text, {
      topic: c.topic ?? '',
      destinationIdentities: dest(c),
      attributes: c.attributes ?? undefined,
    });
    return ['text_sent', { stream_id: info.streamId, chars: text.length, ...digest(enc.encode(text)) }];
  },

  async register_text_stream(c) {
    const topic = c.topic ?? '';
    room.registerTextStreamHandler(topic, (reader, { identity }) => {
      const info = { stream_id: reader.info.streamId, topic: reader.info.topic, attributes: reader.info.attributes ?? {} };
      emit('stream_opened', { kind: 'text', participant: identity, ...info });
      reader
        .readAll()
        .then((text) => {
          const bytes = enc.encode(text);
          emit('text_stream_received', { participant: identity, chars: text.length, text: preview(bytes), ...digest(bytes), ...info });
        })
        .catch((e) => emit('stream_error', { kind: 'text', participant: identity, error: String(e), ...info }));
    });
    return ['stream_handler_registered', { kind: 'text', topic }];
  },

  async register_rpc(c) {
    const method = c.method;
    const behavior = c.behavior ?? 'echo';
    room.localParticipant.registerRpcMethod(method, async (inv) => {
      emit('rpc_invoked', { method, caller: inv.callerIdentity, payload: inv.payload, request_id: inv.requestId });
      if (behavior === 'error') throw new RpcError(Number(c.code ?? 2001), String(c.message ?? 'handler failed'), c.data ?? undefined);
      return JSON.stringify({ echo: inv.payload, caller: inv.callerIdentity, by: room.localParticipant.identity });
    });
    return ['rpc_registered', { method, behavior }];
  },

  async perform_rpc(c) {
    const t0 = performance.now();
    try {
      const resp = await room.localParticipant.performRpc({
        destinationIdentity: c.destination,
        method: c.method,
        payload: c.payload,
        responseTimeout: c.response_timeout != null ? Number(c.response_timeout) * 1000 : undefined,
      });
      return ['rpc_result', { ok: true, response: resp, elapsed: (performance.now() - t0) / 1000 }];
    } catch (e) {
      if (e instanceof RpcError) {
        return ['rpc_result', { ok: false, code: e.code, message: e.message, data: e.data ?? null, elapsed: (performance.now() - t0) / 1000 }];
      }
      throw e;
    }
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
  const opts = { autoSubscribe: true, dynacast: false };
  if (args.singlePc !== undefined) opts.singlePeerConnection = args.singlePc;
  try {
    await Promise.race([
      room.connect(args.url, args.token, opts),
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
    single_pc: args.singlePc ?? null,
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
