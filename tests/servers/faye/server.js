'use strict';
// Real faye (npm) Bayeux server for realtime_sync's tests, mounted where Genesys
// GWS serves CometD: /api/v2/notifications. Binds 127.0.0.1 only.
//
//   node server.js [--port=N] [--timeout=S] [--ping=S] [--auth=none|handshake|http]
//                  [--no-websocket]
// Environment equivalents: FAYE_PORT, FAYE_TIMEOUT, FAYE_PING, FAYE_AUTH, FAYE_NO_WEBSOCKET=1.
//   timeout   faye's connect hold time in seconds (advice.timeout = timeout*1000); a client
//             that sends no /meta/connect for ~2*timeout is expired. Default 3.
//   ping      websocket ping frame cadence in seconds (default: none).
//   auth      none (default); handshake: /meta/handshake fails with "403::Handshake denied" and
//             advice {"reconnect":"none"} (CometD's denial) unless credentials are present; http: every request to the endpoint without
//             credentials gets HTTP 401 (websocket upgrades too), as a servlet filter would.
//             Credentials: HTTP Basic agent:secret, cookie JSESSIONID=test-session-1, or
//             (handshake mode only) ext.auth == "test-token-1".
//   no-websocket  refuse websocket upgrades (HTTP 400) and advertise no "websocket" in the
//             handshake reply, like GWS 8.5 (CometD 3 without websocket).
// Prints "READY <port>" on stdout once listening (port 0 picks a free port).
//
// Control surface (same port, outside the mount point):
//   GET  /health                      -> {"ok":true}
//   POST /publish {"channel","data"}  -> publish one message through faye's in-process client
//   POST /burst {"channel","count","start"?,"chatUri"?} -> N MessageLogUpdated messages in order
//   GET  /stats                       -> counters (handshakes, connects, subscribes, clients...)
//   POST /expire_clients {"close_sockets"?} -> destroy every Bayeux session: a held connect is answered,
//                                        the next connect gets 401::Unknown client with advice
//                                        reconnect=handshake; websockets stay open unless close_sockets
//   POST /drop_connections            -> destroy every TCP socket except the control request's own
//                                        (an abrupt network drop; sessions stay alive)

const http = require('http');
const faye = require('faye');

function arg(name, envName, dflt) {
  const prefix = '--' + name + '=';
  for (const a of process.argv.slice(2)) {
    if (a === '--' + name) return 'true';
    if (a.startsWith(prefix)) return a.slice(prefix.length);
  }
  if (process.env[envName] !== undefined && process.env[envName] !== '') return process.env[envName];
  return dflt;
}

const PORT = parseInt(arg('port', 'FAYE_PORT', '0'), 10);
const TIMEOUT = parseFloat(arg('timeout', 'FAYE_TIMEOUT', '3'));
const PING = arg('ping', 'FAYE_PING', null);
const AUTH = arg('auth', 'FAYE_AUTH', 'none');
const NO_WEBSOCKET = ['1', 'true', 'yes'].includes(String(arg('no-websocket', 'FAYE_NO_WEBSOCKET', '0')));
const MOUNT = '/api/v2/notifications';

const BASIC_OK = 'Basic ' + Buffer.from('agent:secret').toString('base64');
const COOKIE_OK = 'JSESSIONID=test-session-1';
const EXT_TOKEN_OK = 'test-token-1';

const stats = {
  handshakes: 0, handshakes_refused: 0, connects: 0, subscribes: 0, unsubscribes: 0,
  disconnects: 0, publishes: 0, http_refused: 0, ws_upgrades: 0, ws_refused: 0,
  transports: {},
};
const clients = new Set();
const internal = new Set();  // client ids of the in-process publisher

function log(...args) {
  console.log(new Date().toISOString(), ...args);
}

function hasHttpCredentials(req) {
  if ((req.headers.authorization || '') === BASIC_OK) return true;
  const cookies = (req.headers.cookie || '').split(';').map((c) => c.trim());
  return cookies.includes(COOKIE_OK);
}

const bayeuxOptions = { mount: MOUNT, timeout: TIMEOUT };
if (PING !== null) bayeuxOptions.ping = parseFloat(PING);
const bayeux = new faye.NodeAdapter(bayeuxOptions);

bayeux.addExtension({
  incoming(message, request, callback) {
    if (message.channel === '/meta/handshake') {
      if (AUTH === 'handshake') {
        const ext = message.ext || {};
        if (!(request && hasHttpCredentials(request)) && ext.auth !== EXT_TOKEN_OK) {
          stats.handshakes_refused += 1;
          message.error = '403::Handshake denied';
        }
      }
    } else if (message.channel === '/meta/connect') {
      stats.connects += 1;
      const t = message.connectionType || '?';
      stats.transports[t] = (stats.transports[t] || 0) + 1;
    }
    callback(message);
  },
  outgoing(message, request, callback) {
    // The in-process publisher has no HTTP request: keep it out of the client counts.
    if (message.channel === '/meta/handshake' && message.successful && !request) internal.add(message.clientId);
    if (message.channel === '/meta/handshake' && message.error === '403::Handshake denied') {
      message.advice = { reconnect: 'none', interval: 0 };  // as CometD's SecurityPolicy denial
    }
    if (NO_WEBSOCKET && message.channel === '/meta/handshake' && message.supportedConnectionTypes) {
      message.supportedConnectionTypes = message.supportedConnectionTypes.filter((t) => t !== 'websocket');
    }
    callback(message);
  },
});

bayeux.on('handshake', (clientId) => { stats.handshakes += 1; clients.add(clientId); log('handshake', clientId); });
bayeux.on('subscribe', (clientId, channel) => { stats.subscribes += 1; log('subscribe', clientId, channel); });
bayeux.on('unsubscribe', (clientId, channel) => { stats.unsubscribes += 1; log('unsubscribe', clientId, channel); });
bayeux.on('disconnect', (clientId) => { stats.disconnects += 1; clients.delete(clientId); log('disconnect/expired', clientId); });
bayeux.on('publish', () => { stats.publishes += 1; });

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (!raw) return resolve({});
      try { resolve(JSON.parse(raw)); } catch (e) { reject(e); }
    });
    req.on('error', reject);
  });
}

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function burstData(i, chatUri) {
  return {
    messageType: 'MessageLogUpdated',
    notificationType: 'NewMessages',
    messages: [{
      index: i,
      from: { nickname: 'Agent', type: 'Agent', participantId: 'p1' },
      text: 'm' + i,
      visibility: 'All',
      timestamp: new Date(1700000000000 + i * 1000).toISOString(),
      type: 'Text',
      timestampSeconds: 1700000000 + i,
    }],
    chatUri: chatUri || 'http://h/api/v2/chats/c1',
  };
}

const sockets = new Set();

async function control(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  try {
    if (req.method === 'GET' && url.pathname === '/health') return reply(res, 200, { ok: true });
    if (req.method === 'GET' && url.pathname === '/stats') {
      const external = Array.from(clients).filter((id) => !internal.has(id)).length;
      return reply(res, 200, Object.assign({}, stats, { handshakes: stats.handshakes - internal.size, clients: external, sockets: sockets.size, timeout: TIMEOUT, auth: AUTH, websocket: !NO_WEBSOCKET }));
    }
    if (req.method === 'POST' && url.pathname === '/publish') {
      const body = await readJson(req);
      if (!body.channel || body.data === undefined) return reply(res, 400, { error: 'channel and data required' });
      await bayeux.getClient().publish(body.channel, body.data);
      return reply(res, 200, { ok: true });
    }
    if (req.method === 'POST' && url.pathname === '/burst') {
      const body = await readJson(req);
      const count = parseInt(body.count, 10);
      const start = body.start === undefined ? 1 : parseInt(body.start, 10);
      if (!body.channel || !(count >= 0)) return reply(res, 400, { error: 'channel and count required' });
      const client = bayeux.getClient();
      const pending = [];
      for (let n = 0; n < count; n++) pending.push(client.publish(body.channel, burstData(start + n, body.chatUri)));
      await Promise.all(pending);
      return reply(res, 200, { ok: true, count });
    }
    if (req.method === 'POST' && url.pathname === '/expire_clients') {
      const body = await readJson(req);
      const engine = bayeux._server._engine;
      const ids = Array.from(clients).filter((id) => !internal.has(id));  // the publisher stays
      for (const id of ids) {
        // keep websockets open unless asked: the next connect then gets 401::Unknown client
        const conn = engine.connection(id, false);
        if (conn && !body.close_sockets) conn.socket = null;
        engine.destroyClient(id);
      }
      return reply(res, 200, { ok: true, clients: ids.length });
    }
    if (req.method === 'POST' && url.pathname === '/drop_connections') {
      let n = 0;
      for (const s of Array.from(sockets)) {
        if (s === req.socket) continue;
        s.destroy();
        n += 1;
      }
      return reply(res, 200, { ok: true, sockets: n });
    }
    return reply(res, 404, { error: 'not found' });
  } catch (e) {
    return reply(res, 400, { error: String(e && e.message || e) });
  }
}

const server = http.createServer(control);
server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});

function underMount(req) {
  const p = new URL(req.url, 'http://127.0.0.1').pathname;
  return p === MOUNT || p.startsWith(MOUNT + '/');
}

function refuseSocket(socket, status, text) {
  const body = text + '\n';
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

bayeux.attach(server);

// Listeners installed before faye's (prependListener) gate the endpoint.
const fayeRequest = server.listeners('request');
const fayeUpgrade = server.listeners('upgrade');
server.removeAllListeners('request');
server.removeAllListeners('upgrade');
server.on('request', (req, res) => {
  if (AUTH === 'http' && underMount(req) && req.method !== 'OPTIONS' && !hasHttpCredentials(req)) {
    stats.http_refused += 1;
    res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Basic realm="gws"' });
    return res.end('Unauthorized\n');
  }
  for (const l of fayeRequest) l.call(server, req, res);
});
server.on('upgrade', (req, socket, head) => {
  if (underMount(req)) {
    if (NO_WEBSOCKET) { stats.ws_refused += 1; return refuseSocket(socket, '400 Bad Request', 'websocket not supported'); }
    if (AUTH === 'http' && !hasHttpCredentials(req)) { stats.ws_refused += 1; return refuseSocket(socket, '401 Unauthorized', 'Unauthorized'); }
    stats.ws_upgrades += 1;
  }
  for (const l of fayeUpgrade) l.call(server, req, socket, head);
});

// The in-process client used by /publish and /burst: it authenticates like a real client
// (so auth=handshake does not lock it out) and is warmed up before READY (its handshake would
// otherwise reorder the first publish behind later ones).
bayeux.getClient().addExtension({
  outgoing(message, callback) {
    if (message.channel === '/meta/handshake') message.ext = Object.assign({}, message.ext, { auth: EXT_TOKEN_OK });
    callback(message);
  },
});

server.listen(PORT, '127.0.0.1', async () => {
  const port = server.address().port;
  await bayeux.getClient().publish('/warmup', { warm: true });
  log(`faye ${require('faye/package.json').version} on http://127.0.0.1:${port}${MOUNT} timeout=${TIMEOUT}s auth=${AUTH} websocket=${!NO_WEBSOCKET}`);
  process.stdout.write(`READY ${port}\n`);
});

function shutdown() {
  server.close();
  for (const s of sockets) s.destroy();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
