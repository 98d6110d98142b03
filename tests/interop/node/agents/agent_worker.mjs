// A LiveKit Agents worker on the unmodified `@livekit/agents` framework (Node) that needs no AI
// service: the Node twin of tests/interop/python/agents/agent_worker.py.
//
//   node agent_worker.mjs start      (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET,
//                                     AGENT_NAME, WORKER_LABEL, TONE_HZ from the environment)
//
// The worker is the framework's AgentServer (what its CLI runs); each job's agent (this same
// file, imported by the framework's job process) joins the room, publishes a sine tone as
// "agent-tone" and answers the RPC methods "whoami" (JSON) and "echo". The worker prints
// {"event": "registered"} once the server accepted its registration.

import { fileURLToPath, pathToFileURL } from 'node:url';
import { AgentServer, ServerOptions, defineAgent, initializeLogger } from '@livekit/agents';
import {
  AudioFrame,
  AudioSource,
  LocalAudioTrack,
  TrackPublishOptions,
  TrackSource,
} from '@livekit/rtc-node';

const LABEL = process.env.WORKER_LABEL || 'node-worker';
const TONE_HZ = Number(process.env.TONE_HZ || '660');
const RATE = 48000;
const FRAME = 480;

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, worker: LABEL, ...fields }) + '\n');
}

async function tone(source, stopped) {
  let n = 0;
  const step = (2 * Math.PI * TONE_HZ) / RATE;
  while (!stopped.value) {
    const frame = AudioFrame.create(RATE, 1, FRAME);
    for (let i = 0; i < FRAME; i++) frame.data[i] = Math.round(12000 * Math.sin(step * (n + i)));
    n += FRAME;
    await source.captureFrame(frame);
  }
}

export default defineAgent({
  entry: async (ctx) => {
    await ctx.connect();
    const room = ctx.room;
    const me = room.localParticipant;
    me.registerRpcMethod('whoami', async (data) =>
      JSON.stringify({
        worker: LABEL,
        job_id: ctx.job.id,
        room: room.name,
        metadata: ctx.job.metadata,
        identity: me.identity,
        kind: me.kind ?? -1,
        caller: data.callerIdentity,
      }),
    );
    me.registerRpcMethod('echo', async (data) => data.payload);
    const source = new AudioSource(RATE, 1);
    const track = LocalAudioTrack.createAudioTrack('agent-tone', source);
    const opts = new TrackPublishOptions();
    opts.source = TrackSource.SOURCE_MICROPHONE;
    await me.publishTrack(track, opts);
    const stopped = { value: false };
    tone(source, stopped).catch(() => {});
    ctx.addShutdownCallback(async () => {
      stopped.value = true;
    });
  },
});

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain && process.argv[2] === 'start') {
  initializeLogger({ pretty: false, level: 'info' });
  const server = new AgentServer(
    new ServerOptions({
      agent: fileURLToPath(import.meta.url),
      agentName: process.env.AGENT_NAME || '',
      wsURL: process.env.LIVEKIT_URL,
      apiKey: process.env.LIVEKIT_API_KEY,
      apiSecret: process.env.LIVEKIT_API_SECRET,
      production: true,
      numIdleProcesses: 1,
      // Load follows the jobs this worker runs, not the shared machine's CPU.
      loadFunc: async (w) => Math.min(1, 0.1 * w.activeJobs.length),
      loadThreshold: 0.95,
      host: '127.0.0.1',
      port: 0,
    }),
  );
  server.event.on('worker_registered', (id) => emit('registered', { worker_id: id }));
  process.once('SIGTERM', async () => {
    await server.close();
    process.exit(0);
  });
  server.run().catch((e) => {
    emit('fatal', { error: String(e) });
    process.exit(1);
  });
}
