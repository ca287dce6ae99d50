'use strict';
// The CometD project's own Node.js server (npm cometd-nodejs-server) for realtime_sync's tests,
// mounted where Genesys GWS serves CometD: /api/v2/notifications. Long-polling only (a websocket
// upgrade is refused); sessions are found by the BAYEUX_BROWSER cookie; the acknowledged-messages
// extension (ack-extension.js, shipped with the server) is installed. Binds 127.0.0.1 only.
//
//   node server.js [--port=N] [--timeout=MS]
// Prints "READY <port>" once listening.
// Control (same port): GET /health; POST /burst {"channel","count","start"?} publishes N data
// messages {"seq": i} in order, spaced over several event-loop turns (so they fall into several
// batches, as a live feed does); GET /stats.

const http = require('http');
const cometd = require('cometd-nodejs-server');
const { AcknowledgedMessagesExtension } = require('cometd-nodejs-server/ack-extension');

function arg(name, dflt) {
  const prefix = '--' + name + '=';
  for (const a of process.argv.slice(2)) if (a.startsWith(prefix)) return a.slice(prefix.length);
  return dflt;
}

const PORT = parseInt(arg('port', '0'), 10);
const TIMEOUT = parseInt(arg('timeout', '2000'), 10);
const MOUNT = '/api/v2/notifications';
const server = cometd.createCometDServer({ timeout: TIMEOUT });
server.addExtension(new AcknowledgedMessagesExtension());
const stats = { bursts: 0, published: 0, publishes_from_clients: 0 };

function reply(res, code, obj) {
  res.writeHead(code, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(obj));
}

const http_server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === MOUNT || path.startsWith(MOUNT + '/')) {
    if (req.method === 'POST' && req.url.startsWith(MOUNT)) {
      server.handle(req, res);
    } else {
      reply(res, 400, { error: 'long-polling only' });
    }
    return;
  }
  let body = '';
  req.on('data', c => { body += c; });
  req.on('end', () => {
    if (req.method === 'GET' && path === '/health') return reply(res, 200, { ok: true });
    if (req.method === 'GET' && path === '/stats') return reply(res, 200, stats);
    if (req.method === 'POST' && path === '/burst') {
      const b = JSON.parse(body || '{}');
      const channel = server.createServerChannel(b.channel);
      const start = b.start || 1;
      stats.bursts++;
      let i = 0;
      const step = () => {
        for (let k = 0; k < 5 && i < b.count; k++, i++) {
          channel.publish(null, { seq: start + i });
          stats.published++;
        }
        if (i < b.count) setImmediate(step);
      };
      step();
      return reply(res, 200, { ok: true, count: b.count });
    }
    reply(res, 404, { error: 'not found' });
  });
});
http_server.on('upgrade', (req, socket) => {
  socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
});
http_server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write('READY ' + http_server.address().port + '\n');
});
