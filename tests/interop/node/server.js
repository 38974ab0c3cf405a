// The ws package as a server on /echo and /cmd; options as JSON in argv, events on stdout.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const WebSocket = require('ws');
const { payload, encoded, split, summary } = require('./payloads.js');

const options = JSON.parse(process.argv[2] || '{}');
const DEFLATE = {
  deflate: { threshold: 0 },
  'no-takeover': { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
  'window-9': { threshold: 0, serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
};

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

const server = options.tls
  ? https.createServer({ cert: fs.readFileSync(options.tls.cert), key: fs.readFileSync(options.tls.key) })
  : http.createServer();
const supported = options.protocols || [];
const wss = new WebSocket.Server({
  server,
  perMessageDeflate: options.deflate ? DEFLATE[options.deflate] : false,
  maxPayload: options.maxPayload,
  // The server's order of preference; without a match, go on without a subprotocol.
  handleProtocols: (offered) => supported.find((p) => offered.has(p)) || false,
});

function names(extensions) {
  return extensions ? extensions.split(',') : [];
}

function send(ws, data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
}

async function command(ws, cmd, pongs) {
  switch (cmd.op) {
    case 'send':
      return send(ws, payload(cmd.kind, cmd.size), { binary: cmd.kind !== 'text' });
    case 'send_text':
      return send(ws, cmd.text, { binary: false });
    case 'send_raw_text': // ws does not check what it sends: UTF-8 or not, a text message
      return send(ws, Buffer.from(cmd.hex, 'hex'), { binary: false });
    case 'fragments': {
      const pieces = split(encoded(cmd.kind, cmd.sizes.reduce((a, b) => a + b, 0)), cmd.sizes);
      for (let i = 0; i < pieces.length; i++) {
        await send(ws, pieces[i], { binary: cmd.kind !== 'text', fin: i === pieces.length - 1 });
      }
      return undefined;
    }
    case 'ping': {
      const pong = new Promise((resolve) => pongs.push(resolve));
      ws.ping(Buffer.from(cmd.payload, 'hex'));
      await pong;
      return send(ws, JSON.stringify({ op: 'pong', payload: cmd.payload }), { binary: false });
    }
    case 'close':
      ws.close(cmd.code, cmd.reason);
      return undefined;
    case 'info':
      return send(ws, JSON.stringify({
        op: 'info', subprotocol: ws.protocol || null, extensions: names(ws.extensions),
      }), { binary: false });
    default:
      throw new Error(`unknown command ${cmd.op}`);
  }
}

wss.on('connection', (ws, req) => {
  const path = req.url;
  const pongs = [];
  let chain = Promise.resolve();
  emit({ event: 'open', path, subprotocol: ws.protocol || null, extensions: names(ws.extensions) });
  ws.on('ping', (data) => emit({ event: 'ping', payload: data.toString('hex') }));
  ws.on('pong', () => pongs.length && pongs.shift()());
  ws.on('close', (code, reason) => emit({ event: 'close', code, reason: reason.toString('utf8') }));
  ws.on('error', (err) => emit({ event: 'error', error: String(err) }));
  ws.on('message', (data, isBinary) => {
    if (path === '/echo') {
      emit({ event: 'message', message: summary(data, isBinary) });
      ws.send(data, { binary: isBinary });
      return;
    }
    const text = data.toString('utf8');
    chain = chain.then(() => command(ws, JSON.parse(text), pongs)).catch((err) => {
      emit({ event: 'error', error: String(err && err.stack ? err.stack : err) });
      ws.close(1011);
    });
  });
});

server.listen(0, '127.0.0.1', () => emit({ event: 'listening', port: server.address().port }));
// stdin: "sync" answers once every earlier event is written; end of input exits.
require('readline').createInterface({ input: process.stdin })
  .on('line', () => emit({ event: 'sync' }))
  .on('close', () => process.exit(0));
