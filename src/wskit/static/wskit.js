// wskit's browser client: one ES module, no build step. It connects, reconnects with
// exponential backoff and full jitter, resumes each hub topic from the last position it saw
// (the server's JSON envelopes carry topic, epoch and offset; the next URL carries
// since=<topic>:<epoch>:<offset>), and tells the page its state and why.
//
//   import { Client } from "/wskit.js";
//   const client = new Client("ws://host/rooms/lobby?name=ann", {
//     onstate: (state, why) => ...,       // "connecting" | "open" | "reconnecting" | "closed"
//     onpublication: (pub) => ...,        // {topic, offset, epoch, data}, each exactly once
//     onsubscribed: (answer) => ...,      // {topic, epoch, offset, recovered, replayed}
//     onmessage: (data, parsed) => ...,   // anything else the server sends
//   });
//   client.send("hello"); client.close();

/** Close codes after which the client tries again (RFC 6455 §7.4.1): going away (a deploy),
 * lost without a close, server error, restart, try again later, bad gateway. */
const RETRIED = new Set([1001, 1006, 1011, 1012, 1013, 1014]);

const REASONS = {
  1000: "closed", 1001: "the server is going away", 1006: "connection lost",
  1008: "refused by the server", 1011: "server error", 1012: "the server is restarting",
  1013: "the server is busy", 1014: "bad gateway",
};

export class Client {
  /**
   * @param {string | (() => string)} url the WebSocket URL (or a function giving it)
   * @param {object} options initialDelay, maxDelay (ms), factor, and the on* callbacks
   */
  constructor(url, options = {}) {
    this.url = url;
    this.initialDelay = options.initialDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 30000;
    this.factor = options.factor ?? 2;
    this.onstate = options.onstate ?? (() => {});
    this.onpublication = options.onpublication ?? (() => {});
    this.onsubscribed = options.onsubscribed ?? (() => {});
    this.onmessage = options.onmessage ?? (() => {});
    /** topic -> {epoch, offset}: the last position seen of each topic. */
    this.positions = new Map();
    this.state = "closed";
    this.why = "";
    this.attempt = 0;
    this.socket = null;
    this._timer = null;
    this._stopped = false;
    this._online = () => { if (this._timer !== null) this._retryNow(); };
    if (typeof window !== "undefined") window.addEventListener("online", this._online);
    if (options.connect !== false) this.connect();
  }

  /** The URL of the next connection: the base URL and the positions seen so far. */
  nextUrl() {
    const base = typeof this.url === "function" ? this.url() : this.url;
    const since = [];
    for (const [topic, pos] of this.positions) {
      since.push("since=" + encodeURIComponent(topic + ":" + pos.epoch + ":" + pos.offset)
        .replace(/%3A/g, ":"));
    }
    if (!since.length) return base;
    return base + (base.includes("?") ? "&" : "?") + since.join("&");
  }

  connect() {
    this._stopped = false;
    this._open(this.attempt === 0 && this.state !== "reconnecting" ? "connecting" : "reconnecting");
  }

  send(data) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
      throw new Error("not connected (" + this.state + ")");
    }
    this.socket.send(data);
  }

  /** Stop for good: close the connection and do not reconnect. */
  close(code = 1000, reason = "closed by the page") {
    this._stopped = true;
    clearTimeout(this._timer);
    this._timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(code, reason);
    if (typeof window !== "undefined") window.removeEventListener("online", this._online);
    this._setState("closed", reason);
  }

  _setState(state, why) {
    if (this.state === state && this.why === why) return;
    this.state = state;
    this.why = why;
    this.onstate(state, why);
  }

  _open(state) {
    this._timer = null;
    this._setState(state, state === "connecting" ? "" : this.why);
    let socket;
    try {
      socket = new WebSocket(this.nextUrl());
    } catch (error) {
      this._setState("closed", String(error));
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.attempt = 0;
      this._setState("open", "");
    };
    socket.onmessage = (event) => { if (this.socket === socket) this._received(event.data); };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this._ended(event.code, event.reason);
    };
  }

  _ended(code, reason) {
    if (this._stopped) return;
    const why = (reason || REASONS[code] || "closed") + " (" + code + ")";
    // 4000-4999: the application said no (a name taken...): trying again would not help.
    if (!RETRIED.has(code)) {
      this._stopped = true;
      this._setState("closed", why);
      return;
    }
    this._schedule(why);
  }

  _schedule(why) {
    const cap = Math.min(this.maxDelay, this.initialDelay * this.factor ** this.attempt);
    this.attempt += 1;
    const delay = Math.random() * cap; // full jitter: reconnecting pages do not come in waves
    this._setState("reconnecting", why + "; again in " + (delay / 1000).toFixed(1) + " s");
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open("reconnecting"), delay);
  }

  _retryNow() {
    clearTimeout(this._timer);
    this._open("reconnecting");
  }

  _received(data) {
    let parsed = null;
    if (typeof data === "string" && data.startsWith("{")) {
      try { parsed = JSON.parse(data); } catch (error) { parsed = null; }
    }
    const hasPosition = parsed && typeof parsed.topic === "string" &&
      typeof parsed.epoch === "string" && Number.isInteger(parsed.offset);
    if (hasPosition && parsed.type === "publication") {
      this._publication(parsed);
    } else if (hasPosition && parsed.type === "subscribed") {
      const known = this.positions.get(parsed.topic);
      // Live publications may come before the answer: never go back.
      if (!known || known.epoch !== parsed.epoch || known.offset < parsed.offset) {
        this.positions.set(parsed.topic, { epoch: parsed.epoch, offset: parsed.offset });
      }
      this.onsubscribed(parsed);
    } else {
      this.onmessage(data, parsed);
    }
  }

  _publication(pub) {
    const known = this.positions.get(pub.topic);
    if (known && known.epoch === pub.epoch) {
      if (pub.offset <= known.offset) return; // had it already
      if (pub.offset > known.offset + 1) {
        // A hole (the server dropped some for a slow page): resume from the last one seen.
        const socket = this.socket;
        this.socket = null;
        if (socket) socket.close(1000, "resuming");
        this._schedule("missed publications on " + pub.topic);
        return;
      }
    }
    this.positions.set(pub.topic, { epoch: pub.epoch, offset: pub.offset });
    let data = pub.data;
    if (pub.binary) data = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    this.onpublication({ topic: pub.topic, offset: pub.offset, epoch: pub.epoch, data,
                         epochChanged: Boolean(known && known.epoch !== pub.epoch) });
  }
}
