// The client: its state and public lifecycle. The rest of its behaviour lives in one module
// per concern, each a class whose methods are copied onto RealtimeClient's prototype (below):
// they share the client's fields, so splitting the file changed no behaviour.
import { Channel } from "./channel.js";
import { DEFAULTS, STATE, TRANSPORT } from "./constants.js";
import { Emitter } from "./emitter.js";
import { Messages } from "./messages.js";
import { Offline, PageLifecycle } from "./offline.js";
import { Reads } from "./reads.js";
import { Heartbeat, Reconnect } from "./reconnect.js";
import { Http, Requests } from "./requests.js";
import { SseRecovery } from "./sse-recovery.js";
import { TokenRefresh } from "./tokens.js";
import { SseTransport, SseUrl } from "./transport-sse.js";
import { WebSocketTransport } from "./transport-ws.js";

/**
 * The client. One WebSocket (or, when WebSockets cannot be opened, one Server-Sent Events
 * stream), any number of channels, automatic reconnect.
 *
 * Events (`on(type, fn)`): `state` {state, previous}, `transport` {transport, previous},
 * `availability:updated` {channel, slot, reason, cursor}, `conflict:detected` {channel, slot,
 * quantity, alternatives, cursor}, `presence` {channel, count}, `snapshot` {channel, slots},
 * `subscribed` {channel, cursor, resumed}, `error` {error, code}, `message` (every frame as
 * received). static/realtime.d.ts types them all.
 */
export class RealtimeClient extends Emitter {
  constructor(options = {}) {
    super();
    const o = (this.options = { ...DEFAULTS, ...options });
    this.url = o.url ?? defaultUrl();
    this.httpUrl = o.httpUrl ?? (this.url ? httpFromWs(this.url) : null);
    this.getToken = o.getToken ?? null;
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this._now = o.now ?? (() => Date.now());
    this._random = o.random ?? Math.random;
    this._setTimeout = o.setTimeout ?? ((fn, delay) => setTimeout(fn, delay));
    this._clearTimeout = o.clearTimeout ?? ((t) => clearTimeout(t));
    this._fetch = "fetch" in options ? o.fetch : typeof fetch === "function" ? fetch.bind(globalThis) : null;
    this._document = "document" in options ? o.document : typeof document !== "undefined" ? document : null;
    this._window = "window" in options ? o.window : typeof window !== "undefined" ? window : null;
    this._navigator = "navigator" in options ? o.navigator : typeof navigator !== "undefined" ? navigator : null;
    this._EventSource = "EventSource" in options ? o.EventSource : globalThis.EventSource ?? null;
    this.sseUrl = o.sseUrl ?? (this.httpUrl ? `${this.httpUrl}/sse` : null);

    this.state = STATE.OFFLINE;
    this.transport = TRANSPORT.WEBSOCKET;
    this.channels = new Map();
    this._aliases = new Map(); // channel name as the server spells it -> Channel
    this._pending = new Map(); // request id -> request
    this._subAcks = new Map(); // subscribe id -> Channel
    this._seq = 0;
    this._prefix = Math.floor(this._random() * 36 ** 4).toString(36);
    this._attempt = 0;
    this._ws = null;
    this._wanted = false;
    this._token = null;
    this._refreshAt = null;
    this._refreshing = null;
    this._ping = null;
    this._tickTimer = null;
    this._reconnectTimer = null;
    this._nextRetryAt = null;
    this._lastTickAt = null;
    this._lastRecvAt = null;
    this._openedAt = null;
    this._createdAt = null;
    this._gen = 0; // bumped by close(): an open in flight gives up
    this._listeners = [];
    this._wsLive = false; // the current socket has been live
    this._wsFailures = 0; // WebSocket attempts in a row that ended before being live
    this._wsRetryAt = null; // on SSE: when to try a WebSocket again
    this._sse = null; // the stream: {es, url, channels, waiting, opened, openedAt, token, key}
    this._ssePrev = null; // the stream being replaced, until its successor is live
    this._sseSyncQueued = false;
    this._offlineEvent = false; // the last of the window's offline/online events said offline
    this._waiters = new Set(); // `whenOnline` requests waiting for the network
  }

  /** Whether the socket is open and every channel is subscribed. */
  get live() {
    return this.state === STATE.LIVE;
  }

  /** Open the connection (idempotent). subscribe() calls it for you. */
  connect() {
    if (this._wanted) return this;
    if (!this.url) throw new Error("realtime: no url; pass { url: 'wss://host/ws' }");
    if (!this._WebSocket) throw new Error("realtime: no WebSocket implementation; pass { WebSocket }");
    this._wanted = true;
    this._attempt = 0;
    this._wsFailures = 0;
    this._setTransport(TRANSPORT.WEBSOCKET);
    this._installListeners();
    this._startTicking();
    this._open();
    return this;
  }

  /** Close for good: no reconnect; state becomes `offline`. Pending requests reject. */
  close() {
    this._wanted = false;
    this._gen++;
    this._clearReconnect();
    if (this._tickTimer != null) this._clearTimeout(this._tickTimer);
    this._tickTimer = null;
    this._removeListeners();
    this._dropSse();
    this._discard(1000, "client closed");
    for (const req of [...this._pending.values()]) this._fail(req, { code: "CLIENT_CLOSED", message: "the client was closed" });
    this._rejectWaiters();
    this._setState(STATE.OFFLINE);
  }

  /**
   * Subscribe to a channel. `opts`: `since` (a cursor, e.g. from an HTTP availability
   * response), `from`/`to` (the window shown), `slots` (initial state, e.g. that response's
   * slots). Returns the Channel; `await channel.ready` for the first `subscribed`.
   */
  subscribe(name, opts = {}) {
    let ch = this._channel(name);
    if (ch && ch.status !== "closed") return ch;
    ch = new Channel(this, name, opts);
    this.channels.set(name, ch);
    if (!this._wanted) this.connect();
    else if (this._isOpen()) this._sendSubscribe(ch);
    if (this._sse) this._queueSseSync();
    return ch;
  }

  /** Unsubscribe; resolves when the server confirms (or at once when not connected). */
  unsubscribe(name) {
    const ch = this._channel(name);
    if (!ch) return Promise.resolve();
    ch.status = "closed";
    this.channels.delete(ch.name);
    for (const [alias, c] of this._aliases) if (c === ch) this._aliases.delete(alias);
    for (const [id, c] of this._subAcks) if (c === ch) this._subAcks.delete(id);
    if (this._sse) {
      this._sse.waiting.delete(ch);
      this._queueSseSync();
    }
    this._maybeLive();
    if (!this._isOpen()) return Promise.resolve();
    return this._request("unsubscribe", { channel: ch.name }, { resend: false }).catch(() => {});
  }

  /** The slot with this id in any subscribed channel. */
  getSlot(id) {
    for (const ch of this.channels.values()) {
      const s = ch.get(id);
      if (s) return s;
    }
    return undefined;
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    if (state === STATE.LIVE) this._wakeWaiters(); // the server answers: `whenOnline` requests go now
    this._emit("state", { state, previous });
  }

  _nextId() {
    return `${this._prefix}-${++this._seq}`;
  }

  _uuid() {
    const c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function") {
      try {
        return c.randomUUID();
      } catch {
        /* insecure context */
      }
    }
    let s = "";
    for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-a${s.slice(17, 20)}-${s.slice(20)}`;
  }
}

// Methods, not enumerable, as a class body would define them.
for (const part of [
  WebSocketTransport, SseTransport, SseUrl, SseRecovery, Reconnect, Heartbeat, TokenRefresh,
  Messages, Requests, Http, Reads, PageLifecycle, Offline,
]) {
  for (const [name, desc] of Object.entries(Object.getOwnPropertyDescriptors(part.prototype))) {
    if (name === "constructor") continue;
    if (Object.prototype.hasOwnProperty.call(RealtimeClient.prototype, name)) throw new Error(`realtime: ${name} defined twice`);
    Object.defineProperty(RealtimeClient.prototype, name, desc);
  }
}

/** Shorthand: `connect({url, getToken})` makes a client and opens it. */
export function connect(options = {}) {
  return new RealtimeClient(options).connect();
}

// Where the server is: by default the one this module was loaded from.
function defaultUrl() {
  // The server this module was loaded from; else the page's own origin.
  let base = null;
  try {
    base = new URL(import.meta.url);
  } catch {
    /* not a URL */
  }
  if (!base || !/^https?:$/.test(base.protocol)) {
    if (typeof location !== "undefined" && /^https?:$/.test(location.protocol)) base = new URL(location.href);
    else return null;
  }
  return `${base.protocol === "https:" ? "wss:" : "ws:"}//${base.host}/ws`;
}

/** The HTTP origin of a WebSocket URL (`wss://h/ws` -> `https://h`), or null. */
export function httpFromWs(url) {
  try {
    const u = new URL(url);
    u.protocol = u.protocol === "wss:" ? "https:" : "http:";
    return `${u.protocol}//${u.host}`;
  } catch {
    return null;
  }
}
