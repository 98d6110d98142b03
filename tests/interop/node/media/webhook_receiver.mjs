// A webhook endpoint that checks every POST with livekit-server-sdk's WebhookReceiver.
//
//   node webhook_receiver.mjs --port P --key K --secret S
//
// Each request becomes one JSON line on stdout:
//   {"event":"webhook","name":"room_started","room":"r","participant":"alice","track":"TR_..","id":"EV_.."}
//   {"event":"webhook_error","error":"..."}   (refused; answered 401)
// Exits when stdin closes.
import http from 'node:http';
import { WebhookReceiver } from 'livekit-server-sdk';

const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const port = Number(arg('port'));
const receiver = new WebhookReceiver(arg('key'), arg('secret'));
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks).toString('utf8');
    try {
      const ev = await receiver.receive(body, req.headers.authorization);
      emit({
        event: 'webhook',
        name: ev.event,
        room: ev.room?.name ?? '',
        room_sid: ev.room?.sid ?? '',
        participant: ev.participant?.identity ?? '',
        track: ev.track?.sid ?? '',
        id: ev.id,
      });
      res.writeHead(200);
      res.end('ok');
    } catch (e) {
      emit({ event: 'webhook_error', error: String(e) });
      res.writeHead(401);
      res.end();
    }
  });
});
server.listen(port, '127.0.0.1', () => emit({ event: 'listening', port }));
process.stdin.on('data', (d) => {
  if (String(d).includes('disconnect')) process.exit(0);
});
process.stdin.on('end', () => process.exit(0));
