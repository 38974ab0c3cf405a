// The ws package as a client: one JSON command per stdin line, one JSON answer per stdout line.
'use strict';

const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');
const { payload, encoded, split, summary } = require('./payloads.js');

const DEFLATE = {
  deflate: { threshold: 0 },
  'no-takeover': { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
  'window-9': { threshold: 0, serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
};

let ws = null;
let inbox = [];
let waiters = [];
let pongs = [];
let pongWaiters = [];
let closed = null;
let extensionsHeader = null;

function deliver(item, queue, waiting) {
  if (waiting.length) waiting.shift()(item);
  else queue.push(item);
}

function next(queue, waiting) {
  if (queue.length) return Promise.resolve(queue.shift());
  return new Promise((resolve) => waiting.push(resolve));
}

function connect(cmd) {
  const options = {
    perMessageDeflate: cmd.deflate ? DEFLATE[cmd.deflate] : false,
    maxPayload: cmd.maxPayload,
  };
  if (cmd.ca) options.ca = fs.readFileSync(cmd.ca);
  inbox = [];
  waiters = [];
  pongs = [];
  pongWaiters = [];
  extensionsHeader = null;
  ws = new WebSocket(cmd.url, cmd.protocols || [], options);
  const sock = ws;
  closed = new Promise((resolve) => {
    sock.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString('utf8') });
      deliver(null, inbox, waiters);
    });
  });
  sock.on('upgrade', (res) => {
    extensionsHeader = res.headers['sec-websocket-extensions'] || null;
  });
  sock.on('error', () => {}); // reported by the close code (1006) and the commands
  sock.on('message', (data, isBinary) => deliver(summary(data, isBinary), inbox, waiters));
  sock.on('pong', (data) => deliver(data.toString('hex'), pongs, pongWaiters));
  return new Promise((resolve, reject) => {
    sock.once('open', () => resolve(negotiated()));
    sock.once('error', reject);
  });
}

function negotiated() {
  return {
    subprotocol: ws.protocol || null,
    extensions: ws.extensions ? ws.extensions.split(',') : [],
    params: { header: extensionsHeader },
  };
}

function send(data, options) {
  return new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve({}))));
}

const handlers = {
  connect,
  send: (cmd) => send(payload(cmd.kind, cmd.size), { binary: cmd.kind !== 'text' }),
  send_text: (cmd) => send(cmd.text, { binary: false }),
  // ws does not check what it sends: these bytes go out as a text message, UTF-8 or not.
  send_raw_text: (cmd) => send(Buffer.from(cmd.hex, 'hex'), { binary: false }),
  fragments: async (cmd) => {
    const pieces = split(encoded(cmd.kind, cmd.sizes.reduce((a, b) => a + b, 0)), cmd.sizes);
    for (let i = 0; i < pieces.length; i++) {
      await send(pieces[i], { binary: cmd.kind !== 'text', fin: i === pieces.length - 1 });
    }
    return {};
  },
  recv: async () => {
    const message = await next(inbox, waiters);
    if (message === null) throw new Error(`closed: ${JSON.stringify(await closed)}`);
    return { message };
  },
  ping: async (cmd) => {
    ws.ping(Buffer.from(cmd.payload, 'hex'));
    return { payload: await next(pongs, pongWaiters) };
  },
  close: async (cmd) => {
    if (cmd.code === null) ws.close();
    else ws.close(cmd.code, cmd.reason);
    return closed;
  },
  wait_closed: async () => {
    const message = await Promise.race([closed.then(() => null), next(inbox, waiters)]);
    if (message !== null) throw new Error(`expected a close, got a message ${JSON.stringify(message)}`);
    return closed;
  },
  negotiated: async () => negotiated(),
  exit: async () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.terminate();
    setImmediate(() => process.exit(0));
    return {};
  },
};

// Commands run one at a time, in order.
let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  chain = chain.then(async () => {
    let answer;
    try {
      answer = { ok: true, ...(await handlers[cmd.op](cmd)) };
    } catch (err) {
      answer = { ok: false, error: String(err && err.stack ? err.stack : err) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  });
});
