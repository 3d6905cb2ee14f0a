// realtime.js: the browser client of a realtime availability server.
//
// A dependency-free ES module (no build step). Import it straight from the server:
//
//   import { RealtimeClient } from "https://booking.example.com/static/realtime.js";
//   const rt = new RealtimeClient();            // connects to the server it was loaded from
//   const ch = rt.subscribe("service:ID");       // local state + events, resumed across reconnects
//   ch.on("availability:updated", ({ slot }) => render(slot));
//   const { booking } = await rt.book(slotId);   // rejects with a RealtimeError on conflict
//
// When WebSockets cannot be opened (a proxy that breaks them), it falls back by itself to the
// server's Server-Sent Events stream (`/sse`) for updates and to the HTTP API for bookings;
// `rt.transport` says which ("websocket" or "sse").
//
// docs/client.md documents the whole API. Everything that touches the outside world (the
// WebSocket and EventSource constructors, the clock, timers, randomness, fetch,
// document/window) can be injected, so the reconnect, heartbeat, fallback and ordering logic is
// unit tested in Node with fakes.

export const VERSION = "0.1.0";

/** Connection states, as the contract names them. */
export const STATE = Object.freeze({
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
});

/** Transports: a WebSocket, or the Server-Sent Events stream plus the HTTP API. */
export const TRANSPORT = Object.freeze({
  WEBSOCKET: "websocket",
  SSE: "sse",
});

const DEFAULTS = Object.freeze({
  baseDelay: 500, // ms: first reconnect waits random() * baseDelay
  maxDelay: 30000, // ms: cap of the exponential backoff
  stableAfter: 5000, // ms: a connection open this long resets the backoff
  heartbeatInterval: 15000, // ms without any frame from the server before we ping
  pongTimeout: 8000, // ms a ping may stay unanswered (wall clock) before the socket is dead
  connectTimeout: 10000, // ms a socket may stay CONNECTING
  requestTimeout: 20000, // ms for book / hold / cancel to be answered
  refreshMargin: 60000, // ms before a token's `exp` at which it is refreshed with `auth`
  httpFallback: true, // book / hold / cancel over HTTP when the socket is not live
  sseFallback: true, // fall back to Server-Sent Events when WebSockets cannot be opened
  sseAfter: 3, // WebSocket attempts in a row that never became live before SSE is tried beside them
  wsRetryInterval: 300000, // ms on SSE between attempts to go back to a WebSocket (0: never)
});

/**
 * Exponential backoff with full jitter: a uniformly random delay in
 * [0, min(maxDelay, baseDelay * 2^attempt)). Thousands of clients that lost the same server
 * spread their reconnects over the whole window instead of arriving together.
 */
export function backoffDelay(attempt, { baseDelay = DEFAULTS.baseDelay, maxDelay = DEFAULTS.maxDelay, random = Math.random } = {}) {
  const exp = Math.min(Math.max(0, attempt | 0), 30);
  const cap = Math.min(maxDelay, baseDelay * 2 ** exp);
  const r = Math.min(Math.max(Number(random()) || 0, 0), 0.999999999);
  return Math.floor(r * cap);
}

const CURSOR = /^(\d+)@([A-Za-z0-9]+)$/;

// Order two cursors of the server's `<position>@<epoch>` form: <0, 0, >0, or null when they
// cannot be compared (another form, or another epoch: another event log).
function compareCursors(a, b) {
  const x = CURSOR.exec(String(a));
  const y = CURSOR.exec(String(b));
  if (!x || !y || x[2] !== y[2]) return null;
  const p = x[1].replace(/^0+(?=\d)/, "");
  const q = y[1].replace(/^0+(?=\d)/, "");
  return p.length - q.length || (p < q ? -1 : p > q ? 1 : 0);
}

/** True when `incoming` is a newer version of a slot than `current` (or there is no current). */
export function isNewer(incoming, current) {
  if (!incoming) return false;
  if (!current) return true;
  return Number(incoming.version) > Number(current.version);
}

/** The `exp` claim of a JWT in milliseconds, or null when it has none or is not a JWT. */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length < 2) return null;
  try {
    let b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const json = typeof atob === "function" ? atob(b64) : globalThis.Buffer.from(b64, "base64").toString("binary");
    const claims = JSON.parse(json);
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** An error the server (or the client) reported: carries every field of the contract's error object. */
export class RealtimeError extends Error {
  constructor(error) {
    const e = error && typeof error === "object" ? error : { code: "ERROR", message: String(error) };
    super(e.message || e.code || "error");
    this.name = "RealtimeError";
    Object.assign(this, e); // code, message, slot, alternatives, field, ...
    this.error = e;
  }
}

class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  /** Listen to `type` ("*" for everything); returns a function that stops listening. */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    this._handlers.get(type)?.delete(fn);
  }
  once(type, fn) {
    const off = this.on(type, (d) => {
      off();
      fn(d);
    });
    return off;
  }
  _emit(type, detail) {
    for (const key of [type, "*"]) {
      const set = this._handlers.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(key === "*" ? { type, ...detail } : detail);
        } catch (err) {
          // A listener's bug must not break the connection; surface it asynchronously.
          setTimeout(() => {
            throw err;
          }, 0);
        }
      }
    }
  }
}

const ms = (t) => (t == null ? null : typeof t === "number" ? t : Date.parse(t));

// A time for a query string: strings as given, Dates and epoch milliseconds as ISO 8601.
const isoTime = (t) => (typeof t === "string" ? t : new Date(t).toISOString());

/**
 * One subscribed channel (`vendor:ID` or `service:ID`) and its local state: slots by id, each
 * replaced only by a newer version. Emits the same events as the client, for this channel only.
 */
export class Channel extends Emitter {
  constructor(client, name, opts = {}) {
    super();
    this.client = client;
    this.name = name;
    this.cursor = opts.since ?? null;
    this.from = opts.from ?? null;
    this.to = opts.to ?? null;
    this.slots = new Map();
    this.presence = null;
    this.status = "pending"; // pending | subscribed | error | closed
    this.error = null;
    this._fromMs = ms(this.from);
    this._toMs = ms(this.to);
    for (const slot of opts.slots ?? []) this._apply(slot);
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // awaiting it is optional
  }

  /** The slot with this id, or undefined. */
  get(id) {
    return this.slots.get(String(id));
  }

  /** Every slot, ordered by start time. */
  list() {
    return [...this.slots.values()].sort(
      (a, b) => ms(a.starts_at) - ms(b.starts_at) || ms(a.ends_at) - ms(b.ends_at) || String(a.id).localeCompare(String(b.id)),
    );
  }

  /** Whether a slot falls inside the window this channel was subscribed with. */
  inWindow(slot) {
    if (!slot) return false;
    const start = ms(slot.starts_at);
    const end = ms(slot.ends_at ?? slot.starts_at);
    if (this._toMs != null && !(start < this._toMs)) return false;
    if (this._fromMs != null && !(end > this._fromMs)) return false;
    return true;
  }

  unsubscribe() {
    return this.client.unsubscribe(this.name);
  }

  // Apply a slot if it is newer; returns true when the local state changed.
  _apply(slot) {
    if (!slot || slot.id == null || !this.inWindow(slot)) return false;
    const id = String(slot.id);
    if (!isNewer(slot, this.slots.get(id))) return false;
    this.slots.set(id, slot);
    return true;
  }

  _replace(slots) {
    this.slots.clear();
    for (const slot of slots ?? []) this._apply(slot);
  }
}

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

function httpFromWs(url) {
  try {
    const u = new URL(url);
    u.protocol = u.protocol === "wss:" ? "https:" : "http:";
    return `${u.protocol}//${u.host}`;
  } catch {
    return null;
  }
}

const OPEN = 1;
const CONNECTING = 0;
const CLOSED = 2; // an EventSource's readyState once it has given up
const SSE_EVENTS = ["subscribed", "availability:updated", "conflict:detected"];

/**
 * The client. One WebSocket (or, when WebSockets cannot be opened, one Server-Sent Events
 * stream), any number of channels, automatic reconnect.
 *
 * Events (`on(type, fn)`): `state` {state, previous}, `transport` {transport, previous},
 * `availability:updated` {channel, slot, reason, cursor}, `conflict:detected` {channel, slot,
 * quantity, alternatives, cursor}, `presence` {channel, count}, `snapshot` {channel, slots},
 * `subscribed` {channel, cursor, resumed}, `error` {error, code}, `message` (every frame as
 * received).
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
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closed */
      }
    }
    for (const req of [...this._pending.values()]) this._fail(req, { code: "CLIENT_CLOSED", message: "the client was closed" });
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

  /**
   * Book units of a slot (`quantity`: 1 unless given; confirming `holdId` books the hold's own
   * quantity). Resolves `{booking, slot}`; rejects with a RealtimeError
   * (`code` BOOKING_CONFLICT carries `slot` and `alternatives`). Carries an idempotency key, so
   * a booking in flight when the connection drops is safely re-sent after the reconnect.
   */
  book(slotId, { quantity, holdId, idempotencyKey, customerId } = {}) {
    const key = idempotencyKey ?? this._uuid();
    // `quantity` only when given: the server books 1, or a confirmed hold's own quantity.
    const fields = { slot_id: String(slotId) };
    if (quantity != null) fields.quantity = quantity;
    if (holdId != null) fields.hold_id = String(holdId);
    if (this._useHttp()) {
      const body = { ...fields };
      if (customerId != null) body.customer_id = String(customerId);
      return this._http("POST", "/api/bookings", body, key).then((r) => this._absorb(r));
    }
    return this._request("book", { ...fields, idempotency_key: key }, { resend: true });
  }

  /** Hold units of a slot for `ttlSeconds`. Resolves `{hold, slot}`. */
  hold(slotId, { quantity = 1, ttlSeconds } = {}) {
    const fields = { slot_id: String(slotId), quantity };
    if (ttlSeconds != null) fields.ttl_seconds = ttlSeconds;
    if (this._useHttp()) return this._http("POST", "/api/holds", fields).then((r) => this._absorb(r));
    // Not idempotent on the server: never re-sent blindly after a lost connection.
    return this._request("hold", fields, { resend: false });
  }

  /** Cancel a booking (cancelling twice is harmless). Resolves `{booking, slot}`. */
  cancel(bookingId) {
    if (this._useHttp()) {
      return this._http("POST", `/api/bookings/${encodeURIComponent(bookingId)}/cancel`, {}).then((r) => this._absorb(r));
    }
    return this._request("cancel", { booking_id: String(bookingId) }, { resend: true });
  }

  // --- reading over HTTP ------------------------------------------------------------------------
  //
  // What a page reads before (or besides) subscribing. Each resolves with the server's JSON and
  // rejects with a RealtimeError carrying the HTTP `status` and the server's `code` and
  // `message` (NETWORK_ERROR when the server cannot be reached).

  /**
   * Availability of one service or of all a vendor's services: `{channel, cursor, slots}`, ready
   * for `subscribe(channel, {since: cursor, from, to, slots})`. `from`/`to` (optional): ISO
   * strings, Dates or epoch milliseconds.
   */
  getAvailability({ service, vendor, from, to } = {}) {
    if ((service == null) === (vendor == null)) throw new TypeError("getAvailability: pass one of { service, vendor }");
    const path = service != null ? `/api/services/${encodeURIComponent(service)}` : `/api/vendors/${encodeURIComponent(vendor)}`;
    const query = new URLSearchParams();
    if (from != null) query.set("from", isoTime(from));
    if (to != null) query.set("to", isoTime(to));
    const qs = query.toString();
    return this._http("GET", `${path}/availability${qs ? `?${qs}` : ""}`);
  }

  /** A vendor and its services: `{id, name, services}`. */
  getVendor(id) {
    return this._http("GET", `/api/vendors/${encodeURIComponent(id)}`);
  }

  /** A service: `{id, vendor_id, name, exclusive}`. */
  getService(id) {
    return this._http("GET", `/api/services/${encodeURIComponent(id)}`);
  }

  /** The demo vendor of a server started with `--demo`: `{vendor_id}` (404 when there is none). */
  getDemo() {
    return this._http("GET", "/api/demo");
  }

  /** Check the connection now (what a visible tab or a network change does by itself). */
  resync(reason = "manual") {
    if (!this._wanted) return;
    if (this.transport === TRANSPORT.SSE) {
      // No ping reaches the page over SSE: a stream that may have died (the network came back,
      // the page was frozen) is reopened, resuming from the cursors. A visible tab keeps an
      // open stream.
      if (this._sse && reason === "visible" && this._sse.es.readyState === OPEN) {
        this._emit("resync", { reason });
        return;
      }
      this._dropSse();
      this._channelsPending();
    }
    if (this.transport === TRANSPORT.WEBSOCKET && this._ws && this._ws.readyState === OPEN) {
      this._sendPing(true);
      this._startTicking();
    } else if (!this._ws || this.transport === TRANSPORT.SSE) {
      // Come back soon, still with a little jitter so that tabs do not come back together.
      this._clearReconnect();
      this._attempt = 0;
      if (this._isBrowserOffline()) {
        this._setState(STATE.OFFLINE);
        this._scheduleReconnect(null, { slow: true });
      } else {
        this._setState(STATE.RECONNECTING);
        const delay = backoffDelay(0, { baseDelay: this.options.baseDelay, maxDelay: this.options.maxDelay, random: this._random });
        this._reconnectTimer = this._setTimeout(() => this._open(), delay);
        this._nextRetryAt = this._now() + delay;
      }
    }
    this._emit("resync", { reason });
  }

  // --- connection ------------------------------------------------------------------------------

  // The next attempt: on the WebSocket transport a socket (and, once `sseAfter` attempts in a
  // row failed, a stream beside it); on SSE a stream.
  async _open() {
    this._clearReconnect();
    if (!this._wanted) return;
    // With no channel there is nothing to stream: SSE is for channels only.
    if (this.transport === TRANSPORT.SSE && !this._sseChannels().length) this._setTransport(TRANSPORT.WEBSOCKET);
    const sse = this.transport === TRANSPORT.SSE;
    if (sse ? this._sse : this._ws) return;
    const gen = this._gen;
    if (this.state !== STATE.RECONNECTING) this._setState(STATE.RECONNECTING);
    if (this.getToken) {
      // (Without getToken the attempt starts synchronously.)
      if (!(await this._connectToken(gen))) {
        if (gen === this._gen && this._wanted) this._scheduleReconnect();
        return;
      }
      if (gen !== this._gen || !this._wanted || (sse ? this._sse : this._ws)) return;
    }
    if (sse) {
      if (!this._openSse()) this._scheduleReconnect();
      return;
    }
    const opened = this._openWs();
    if (!this._sse && this._wsFailures >= this.options.sseAfter && this._sseUsable()) this._openSse();
    if (!opened && !this._sse) this._scheduleReconnect();
  }

  // Ask `getToken` for the token of a new connection; false when it failed (or was abandoned).
  async _connectToken(gen) {
    if (!this.getToken) return true;
    try {
      const token = await this.getToken({ reason: "connect" });
      if (gen !== this._gen || !this._wanted) return false;
      this._setToken(token);
      return true;
    } catch (err) {
      if (gen === this._gen && this._wanted) this._emit("error", { code: "TOKEN_FAILED", error: err });
      return false;
    }
  }

  _openWs() {
    let url = this.url;
    if (this._token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this._token);
    let ws;
    try {
      ws = new this._WebSocket(url);
    } catch (err) {
      this._emit("error", { code: "CONNECT_FAILED", error: err });
      this._wsFailures++;
      return false;
    }
    this._ws = ws;
    this._wsLive = false;
    this._createdAt = this._now();
    this._openedAt = null;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev?.code, ev?.reason);
    ws.onerror = () => {}; // a close event always follows
    return true;
  }

  // On SSE, every `wsRetryInterval`: try a WebSocket beside the stream; it takes over once live.
  async _probeWs() {
    if (!this._wanted || this._ws) return;
    const gen = this._gen;
    const ok = !this.getToken || (await this._connectToken(gen));
    if (gen !== this._gen || !this._wanted || this._ws || this.transport !== TRANSPORT.SSE) return;
    if (!ok || !this._openWs()) this._retryWsLater();
  }

  _retryWsLater() {
    const every = this.options.wsRetryInterval;
    this._wsRetryAt = this.transport === TRANSPORT.SSE && every > 0 ? this._now() + every : null;
  }

  _onOpen(ws) {
    if (ws !== this._ws) return;
    const now = this._now();
    this._openedAt = now;
    this._lastRecvAt = now;
    this._ping = null;
    this._subAcks.clear();
    const carried = this._sseCarries(); // the stream keeps the channels until this socket is live
    for (const ch of this.channels.values()) {
      if (ch.status === "error" || ch.status === "closed") continue;
      if (!carried) ch.status = "pending";
      this._sendSubscribe(ch);
    }
    for (const req of this._pending.values()) if (!req.sent && !req.http) this._sendRequest(req);
    this._maybeLive();
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._detach();
    this._connectionLost(code, reason);
  }

  // Forget the socket (without waiting for a close handshake a dead network never finishes).
  _detach() {
    const ws = this._ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._ws = null;
    this._ping = null;
  }

  _drop(code, reason) {
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        /* ignore */
      }
    }
    this._connectionLost(code, reason);
  }

  _connectionLost(code, reason) {
    if (!this._wsLive) this._wsFailures++; // it never got live: what a broken proxy looks like
    this._wsLive = false;
    const carried = this._sseCarries();
    if (!carried) this._channelsPending();
    this._subAcks.clear();
    for (const req of [...this._pending.values()]) {
      if (req.http || !req.sent) continue;
      if (req.resend) req.sent = false; // re-sent on the next connection
      else this._fail(req, { code: "CONNECTION_LOST", message: "the connection was lost before the server answered" });
    }
    if (this._openedAt != null && this._now() - this._openedAt >= this.options.stableAfter) this._attempt = 0;
    this._openedAt = null;
    if (carried) {
      this._retryWsLater(); // stay on the stream; try a WebSocket again later
      return;
    }
    this._emit("disconnected", { code, reason });
    // A stream tried beside this socket decides what comes next: it carries the channels if
    // it opens, and schedules the next attempt if it fails.
    if (this._sse) return this._maybeLive();
    if (this._wanted) this._scheduleReconnect(code);
  }

  _scheduleReconnect(code, { slow = false } = {}) {
    if (!this._wanted) return;
    this._clearReconnect();
    let delay;
    if (slow || this._isBrowserOffline()) {
      // The browser says it has no network: wait for its `online` event, probing rarely.
      this._setState(STATE.OFFLINE);
      delay = this.options.maxDelay;
    } else {
      this._setState(STATE.RECONNECTING);
      let attempt = this._attempt++;
      if (code === 1013) attempt = Math.max(attempt, 4); // overloaded: back off harder
      if (code === 1008) this._token = null; // bad token: fetch a fresh one
      delay = backoffDelay(attempt, { baseDelay: this.options.baseDelay, maxDelay: this.options.maxDelay, random: this._random });
    }
    this._nextRetryAt = this._now() + delay;
    this._reconnectTimer = this._setTimeout(() => this._open(), delay);
  }

  _clearReconnect() {
    if (this._reconnectTimer != null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._nextRetryAt = null;
  }

  _isOpen() {
    return !!this._ws && this._ws.readyState === OPEN && this._openedAt != null;
  }

  _isBrowserOffline() {
    return !!this._navigator && this._navigator.onLine === false;
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  _maybeLive() {
    if (this._isOpen() && this._subAcks.size === 0) {
      // Live on the WebSocket: it is preferred, so any stream goes.
      this._wsLive = true;
      this._wsFailures = 0;
      this._dropSse();
      this._setTransport(TRANSPORT.WEBSOCKET);
      this._setState(STATE.LIVE);
      return;
    }
    const s = this._sse;
    if (!s || !s.opened || s.es.readyState !== OPEN) return;
    if (this.transport !== TRANSPORT.SSE) {
      if (this._ws) return; // a WebSocket attempt is still in flight: it is preferred
      this._setTransport(TRANSPORT.SSE);
    }
    for (const ch of s.waiting) if (ch.status === "closed" || ch.status === "error") s.waiting.delete(ch);
    if (s.waiting.size) return;
    if (this._ssePrev) this._closeSse(this._ssePrev); // the stream it replaced
    this._ssePrev = null;
    this._setState(STATE.LIVE);
  }

  _send(obj) {
    if (!this._isOpen()) return false;
    try {
      this._ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  _sendSubscribe(ch) {
    const id = this._nextId();
    const msg = { type: "subscribe", id, channel: ch.name };
    if (ch.cursor) msg.since = ch.cursor;
    if (ch.from) msg.from = ch.from;
    if (ch.to) msg.to = ch.to;
    this._subAcks.set(id, ch);
    this._send(msg);
  }

  // --- Server-Sent Events ------------------------------------------------------------------------
  //
  // The fallback for pages whose WebSockets never get live (a proxy that refuses or breaks
  // them): once `sseAfter` attempts in a row failed, every attempt also opens one EventSource on
  // `/sse` with all the channels. The WebSocket is preferred: the stream carries the channels
  // (transport "sse") only if it opens while no socket attempt is in flight, and any socket
  // that gets live takes over from it. On SSE the browser's EventSource reconnects by itself
  // with `Last-Event-ID`; when it gives up (the server answered an error) or its first retry
  // fails, the client asks the server why (the same URL with fetch) and opens a new stream with
  // `?since=` after its own backoff.

  _sseUsable() {
    return !!(this.options.sseFallback && this._EventSource && this.sseUrl && this._sseChannels().length);
  }

  _sseChannels() {
    return [...this.channels.values()].filter((ch) => ch.status !== "error" && ch.status !== "closed");
  }

  // Whether a stream (open or reconnecting) is what carries the channels.
  _sseCarries() {
    return this.transport === TRANSPORT.SSE && !!this._sse;
  }

  _channelsPending() {
    for (const ch of this.channels.values()) if (ch.status === "subscribed") ch.status = "pending";
  }

  _setTransport(transport) {
    if (transport === this.transport) return;
    const previous = this.transport;
    this.transport = transport;
    if (transport === TRANSPORT.SSE) {
      for (const ch of this.channels.values()) ch.presence = null; // not sent over SSE
      this._retryWsLater();
    } else {
      this._wsRetryAt = null;
    }
    this._emit("transport", { transport, previous });
  }

  // One EventSource for every channel; false when there is nothing to open.
  _openSse() {
    const channels = this._sseChannels();
    if (!channels.length || !this._EventSource || !this.sseUrl) return false;
    const url = this._sseUrlFor(channels);
    let es;
    try {
      es = new this._EventSource(url);
    } catch (err) {
      this._emit("error", { code: "CONNECT_FAILED", error: err });
      return false;
    }
    const s = {
      es, url, channels, waiting: new Set(channels), opened: false, openedAt: null, closed: false,
      retries: 0, token: this._token, key: this._sseKey(channels),
    };
    this._sse = s;
    es.onopen = () => this._onSseOpen(s);
    es.onerror = () => this._onSseError(s);
    for (const type of SSE_EVENTS) es.addEventListener(type, (ev) => this._onSseEvent(s, type, ev));
    return true;
  }

  // `/sse?channel=...`: one window for all (the earliest `from`, the latest `to`; none if any
  // channel has none: each channel still keeps only its own window), one `since` (below).
  _sseUrlFor(channels) {
    const q = new URLSearchParams();
    for (const ch of channels) q.append("channel", ch.name);
    const { from, to } = this._sseWindow(channels);
    if (from != null) q.set("from", isoTime(from));
    if (to != null) q.set("to", isoTime(to));
    const since = this._sseSince(channels);
    if (since) q.set("since", since);
    if (this._token) q.set("token", this._token);
    return `${this.sseUrl}${this.sseUrl.includes("?") ? "&" : "?"}${q}`;
  }

  _sseWindow(channels) {
    let from = channels[0].from;
    let to = channels[0].to;
    for (const ch of channels) {
      if (from != null && (ch.from == null || ch._fromMs < ms(from))) from = ch.from;
      if (to != null && (ch.to == null || ch._toMs > ms(to))) to = ch.to;
    }
    return { from, to };
  }

  // The stream resumes every channel from one cursor: the oldest of theirs (a channel that is
  // further ahead gets a few events again, which change nothing). A channel without a cursor,
  // or cursors that cannot be compared: no `since`, a snapshot for every channel.
  _sseSince(channels) {
    let since = null;
    for (const ch of channels) {
      if (!ch.cursor) return null;
      if (since == null || ch.cursor === since) {
        since = ch.cursor;
        continue;
      }
      const order = compareCursors(ch.cursor, since);
      if (order == null) return null;
      if (order < 0) since = ch.cursor;
    }
    return since;
  }

  _sseKey(channels) {
    const { from, to } = this._sseWindow(channels);
    return JSON.stringify([channels.map((ch) => ch.name), from == null ? null : isoTime(from), to == null ? null : isoTime(to)]);
  }

  _onSseOpen(s) {
    if (s !== this._sse || s.closed) return;
    s.opened = true;
    s.openedAt = this._now();
    s.retries = 0;
    s.waiting = new Set(s.channels.filter((ch) => ch.status !== "closed" && ch.status !== "error"));
    this._maybeLive();
  }

  _onSseEvent(s, type, ev) {
    if (s.closed || (s !== this._sse && s !== this._ssePrev)) return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this._emit("message", msg);
    if (type === "subscribed") {
      if (s !== this._sse) return;
      const ch = this._channel(msg.channel);
      if (ch) s.waiting.delete(ch);
      return this._onSubscribed(msg);
    }
    this._onChannelEvent(msg, this._channel(msg.channel));
    // Update ids arrive in log order: every channel of the stream has every event up to this one.
    const id = ev.lastEventId || msg.cursor;
    if (!id) return;
    for (const ch of s.channels) {
      if (ch.status !== "subscribed" || s.waiting.has(ch)) continue;
      const order = ch.cursor ? compareCursors(id, ch.cursor) : null;
      if (order != null && order > 0) ch.cursor = id;
    }
  }

  _onSseError(s) {
    if (s.closed) return;
    if (s === this._ssePrev) {
      this._closeSse(s); // the stream being replaced: its successor carries on
      this._ssePrev = null;
      return;
    }
    if (s !== this._sse) return;
    const es = s.es;
    // The browser reconnects an EventSource that had opened by itself, resuming with
    // Last-Event-ID, unless the server refused it (CLOSED) or the token on its URL is stale.
    // Its retries come at a fixed delay, without jitter: if its first retry fails too (the
    // server is down for a while), the client takes over with its own backoff, so that the
    // readers of a server that died do not all come back at the same instant.
    const stale = this._tokenStale(s.token);
    if (s.opened && es.readyState !== CLOSED && !stale && ++s.retries < 2) {
      if (this.transport === TRANSPORT.SSE) {
        this._channelsPending();
        this._setState(this._isBrowserOffline() ? STATE.OFFLINE : STATE.RECONNECTING);
      }
      return;
    }
    const carried = this.transport === TRANSPORT.SSE;
    if (s.opened && s.openedAt != null && this._now() - s.openedAt >= this.options.stableAfter) this._attempt = 0;
    this._dropSse();
    if (carried) {
      this._channelsPending();
      this._setState(this._isBrowserOffline() ? STATE.OFFLINE : STATE.RECONNECTING);
    }
    this._sseFailed(s, stale);
  }

  // A stream failed for good: find out why (the server's answer to the same URL), act on it,
  // then try again, unless a WebSocket attempt in flight decides that.
  async _sseFailed(s, stale) {
    const gen = this._gen;
    let now = stale;
    if (!stale) {
      const answer = await this._probeSse(s.url);
      if (gen !== this._gen || !this._wanted) return;
      if (answer) now = await this._sseRefused(answer, s);
      if (gen !== this._gen || !this._wanted) return;
    }
    if (this._sse || (this.transport !== TRANSPORT.SSE && this._ws)) return;
    if (now) this._open();
    else if (this._reconnectTimer == null) this._scheduleReconnect();
  }

  // The status and error of `GET url` (the body of a stream is not read); null when unreachable.
  async _probeSse(url) {
    if (!this._fetch) return null;
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    try {
      const res = await this._fetch(url, { method: "GET", headers: { accept: "text/event-stream" }, cache: "no-store", signal: abort?.signal });
      let error = null;
      if (!res.ok) {
        try {
          error = (await res.json())?.error ?? null;
        } catch {
          error = null;
        }
      }
      return { status: res.status, error };
    } catch {
      return null;
    } finally {
      try {
        abort?.abort();
      } catch {
        /* ignore */
      }
    }
  }

  // Act on the server's refusal of a stream; true when the next attempt should go at once.
  async _sseRefused({ status, error }, s) {
    if (status >= 200 && status < 300) return false; // it opens now: it was transient
    const code = error?.code ?? `HTTP_${status}`;
    if (code === "UNKNOWN_CHANNEL" || (status === 422 && error?.field === "channel")) {
      // One channel that does not exist refuses the whole stream: find it, stream the others.
      if (await this._refuseUnknownChannels(s.channels)) return true;
    } else if (status === 422 && error?.field === "since") {
      for (const ch of s.channels) ch.cursor = null; // not a cursor of this server: snapshots
      return true;
    } else if (status === 401) {
      this._token = null; // fetch a fresh token for the next attempt
    }
    if (status >= 400 && status < 500 && status !== 429) {
      this._emit("error", { code, error: new RealtimeError({ status, ...(error ?? { code, message: `HTTP ${status}` }) }) });
    }
    return false;
  }

  // Which channels do not exist (their HTTP reads answer 404): each is refused as over the
  // WebSocket (status "error", `ready` rejects with UNKNOWN_CHANNEL). True when one was.
  async _refuseUnknownChannels(channels) {
    const refused = await Promise.all(
      channels.map(async (ch) => {
        const at = ch.name.indexOf(":");
        const kind = ch.name.slice(0, at).toLowerCase();
        const id = encodeURIComponent(ch.name.slice(at + 1));
        const path = kind === "service" ? `/api/services/${id}` : kind === "vendor" ? `/api/vendors/${id}` : null;
        if (path) {
          try {
            await this._http("GET", path);
            return false;
          } catch (err) {
            if (err?.status !== 404) return false;
          }
        }
        this._refuseChannel(ch, { code: "UNKNOWN_CHANNEL", message: `no such channel ${ch.name}`, field: "channel" });
        return true;
      }),
    );
    return refused.some(Boolean);
  }

  _refuseChannel(ch, error) {
    if (ch.status === "closed" || ch.status === "error") return;
    ch.status = "error";
    ch.error = new RealtimeError(error);
    ch._rejectReady(ch.error);
    this._emit("error", { code: error.code, error: ch.error, channel: ch.name });
  }

  // Whether the token on a stream's URL should no longer be used: a newer one was fetched
  // since, or it has expired.
  _tokenStale(token) {
    if (!this.getToken || !token) return false;
    if (token !== this._token) return true;
    const exp = tokenExpiry(token);
    return exp != null && exp <= this._now();
  }

  _closeSse(s) {
    if (!s || s.closed) return;
    s.closed = true;
    s.es.onopen = s.es.onerror = null;
    try {
      s.es.close();
    } catch {
      /* already closed */
    }
  }

  _dropSse() {
    this._closeSse(this._sse);
    this._closeSse(this._ssePrev);
    this._sse = this._ssePrev = null;
  }

  // The channels (or their windows) changed: the stream's URL must follow, once per tick.
  _queueSseSync() {
    if (this._sseSyncQueued) return;
    this._sseSyncQueued = true;
    queueMicrotask(() => {
      this._sseSyncQueued = false;
      this._syncSse();
    });
  }

  _syncSse() {
    const s = this._sse;
    if (!s || !this._wanted) return;
    const channels = this._sseChannels();
    if (channels.length && this._sseKey(channels) === s.key) return;
    if (!channels.length || !this._sseCarries() || !s.opened) {
      // Nothing left to stream (back to trying WebSockets), or a stream that carries nothing
      // yet: replace it.
      this._dropSse();
      if (!channels.length) this._setTransport(TRANSPORT.WEBSOCKET);
      else if (this._openSse()) return;
      if (!this._ws && this._reconnectTimer == null) this._open();
      return;
    }
    // Make before break: the old stream keeps delivering until the new one is live.
    this._closeSse(this._ssePrev);
    this._ssePrev = s;
    this._sse = null;
    if (!this._openSse()) {
      this._sse = s;
      this._ssePrev = null;
    }
  }

  // --- heartbeat ---------------------------------------------------------------------------------
  //
  // Liveness is judged on the wall clock (`now()`), never by counting timer ticks: a background
  // tab's timers may fire a minute late, and a frozen tab's not at all. A ping is due when
  // nothing arrived for `heartbeatInterval`; the socket is dead when a ping stays unanswered for
  // `pongTimeout` *while this page was awake to hear the answer*. When a tick comes late (the
  // tab was throttled or frozen), the pong may be queued behind it, so the verdict waits for one
  // more short check. Becoming visible or online checks at once.

  _tickInterval() {
    const o = this.options;
    return Math.max(250, Math.min(o.heartbeatInterval, o.pongTimeout, o.connectTimeout) / 2);
  }

  _startTicking(delay) {
    if (this._tickTimer != null) this._clearTimeout(this._tickTimer);
    this._lastTickAt = this._now();
    this._tickTimer = this._setTimeout(() => this._tick(), delay ?? this._tickInterval());
  }

  _tick() {
    this._tickTimer = null;
    if (!this._wanted) return;
    const now = this._now();
    const interval = this._tickInterval();
    const late = this._lastTickAt != null && now - this._lastTickAt > interval * 2 + 1000;
    this._lastTickAt = now;
    let next = interval;
    const ws = this._ws;
    if (ws && ws.readyState === CONNECTING) {
      if (now - this._createdAt >= this.options.connectTimeout) {
        if (late) this._createdAt = now; // we were asleep: give it one more window
        else this._drop(4000, "connect timeout");
      }
    } else if (ws && this._isOpen()) {
      const p = this._ping;
      if (p && this._lastRecvAt >= p.sentAt) this._ping = null;
      if (this._ping) {
        if (now - this._ping.sentAt >= this.options.pongTimeout) {
          if (late && !this._ping.grace) {
            this._ping.grace = true; // let queued frames arrive before judging
            next = Math.min(interval, 500);
          } else {
            this._drop(4000, "heartbeat timeout");
          }
        }
      } else if (now - this._lastRecvAt >= this.options.heartbeatInterval || late) {
        this._sendPing(false);
      }
      if (this._refreshAt != null && now >= this._refreshAt) this._refreshToken();
    } else if (ws && ws.readyState >= 2 && now - (this._openedAt ?? this._createdAt) >= interval) {
      this._drop(4000, "closed without a close event"); // never wait on a lost close event
    } else if (!ws && this._nextRetryAt != null && now >= this._nextRetryAt + interval) {
      this._open(); // the retry timer was lost or starved
    }
    if (this._sseCarries()) {
      if (!ws && this._wsRetryAt != null && now >= this._wsRetryAt) {
        this._wsRetryAt = null;
        this._probeWs();
      }
      if (!this._isOpen() && this._refreshAt != null && now >= this._refreshAt) this._refreshToken();
    }
    if (this._wanted && this._tickTimer == null) {
      this._tickTimer = this._setTimeout(() => this._tick(), next);
    }
  }

  _sendPing(awake) {
    if (this._ping && !awake) return;
    const id = this._nextId();
    this._ping = { id, sentAt: this._now(), grace: awake };
    this._send({ type: "ping", id });
  }

  // --- tokens ------------------------------------------------------------------------------------

  _setToken(token) {
    this._token = token || null;
    const exp = tokenExpiry(this._token);
    if (exp == null) {
      this._refreshAt = this.options.tokenRefreshInterval ? this._now() + this.options.tokenRefreshInterval : null;
      return;
    }
    const lifetime = exp - this._now();
    const margin = Math.min(this.options.refreshMargin, Math.max(0, lifetime / 2));
    this._refreshAt = exp - margin;
  }

  // Fetch a fresh token and hand it to the open socket with `auth`; one refresh at a time.
  _refreshToken() {
    if (!this.getToken) return Promise.resolve();
    if (this._refreshing) return this._refreshing;
    this._refreshAt = null;
    this._refreshing = (async () => {
      try {
        const token = await this.getToken({ reason: "refresh" });
        this._setToken(token);
        if (this._token) this._send({ type: "auth", id: this._nextId(), token: this._token });
      } catch (err) {
        this._emit("error", { code: "TOKEN_FAILED", error: err });
        this._refreshAt = this._now() + Math.min(30000, this.options.refreshMargin / 2);
      } finally {
        this._refreshing = null;
      }
    })();
    return this._refreshing;
  }

  // --- messages ----------------------------------------------------------------------------------

  _onMessage(ws, data) {
    if (ws !== this._ws) return;
    this._lastRecvAt = this._now();
    if (this._ping && this._lastRecvAt >= this._ping.sentAt) this._ping = null;
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this._emit("message", msg);
    switch (msg.type) {
      case "subscribed":
        return this._onSubscribed(msg);
      case "availability:updated":
      case "conflict:detected":
        return this._onChannelEvent(msg, this._channel(msg.channel));
      case "presence": {
        const ch = this._channel(msg.channel);
        if (!ch) return;
        ch.presence = msg.count;
        const d = { channel: ch.name, count: msg.count };
        ch._emit("presence", d);
        return this._emit("presence", d);
      }
      case "result":
        return this._onResult(msg);
      case "unsubscribed":
      case "pong": {
        const req = this._pending.get(msg.id);
        if (req) this._settle(req, true, msg);
        return;
      }
      case "error":
        return this._onError(msg);
      default:
        return;
    }
  }

  _onSubscribed(msg) {
    let ch = msg.id != null ? this._subAcks.get(msg.id) : null;
    if (msg.id != null) this._subAcks.delete(msg.id);
    ch = ch ?? this._channel(msg.channel);
    if (!ch || ch.status === "closed") return this._maybeLive();
    if (msg.channel && msg.channel !== ch.name) this._aliases.set(msg.channel, ch);
    const resumed = !msg.snapshot && Array.isArray(msg.events);
    if (msg.snapshot) {
      ch._replace(msg.snapshot.slots);
      ch.cursor = msg.cursor ?? ch.cursor;
      const d = { channel: ch.name, slots: ch.list(), cursor: ch.cursor };
      ch._emit("snapshot", d);
      this._emit("snapshot", d);
    } else if (Array.isArray(msg.events)) {
      for (const ev of msg.events) this._onChannelEvent(ev, ch, true);
      ch.cursor = msg.cursor ?? ch.cursor;
    } else if (msg.cursor) {
      ch.cursor = msg.cursor;
    }
    ch.status = "subscribed";
    const d = { channel: ch.name, cursor: ch.cursor, resumed, missed: resumed ? msg.events.length : null };
    ch._resolveReady(d);
    ch._emit("subscribed", d);
    this._emit("subscribed", d);
    this._maybeLive();
  }

  _onChannelEvent(msg, ch, replay = false) {
    if (!ch || ch.status === "closed" || !msg) return;
    // An event at or before the channel's cursor was had already (a stream resumed from an
    // older cursor of another channel replays it): its slot changes nothing, and a conflict is
    // not reported twice. A cursor never moves back.
    const order = msg.cursor && ch.cursor ? compareCursors(msg.cursor, ch.cursor) : null;
    const seen = order != null && order <= 0;
    if (msg.cursor && !seen) ch.cursor = msg.cursor;
    const isConflict = msg.type === "conflict:detected" || (msg.type == null && "alternatives" in msg && !("reason" in msg));
    const changed = ch._apply(msg.slot);
    if (isConflict) {
      if (seen) return;
      const d = {
        channel: ch.name,
        slot: ch.get(msg.slot?.id) ?? msg.slot,
        quantity: msg.quantity,
        alternatives: msg.alternatives ?? [],
        cursor: msg.cursor,
        replay,
        changed,
      };
      ch._emit("conflict:detected", d);
      this._emit("conflict:detected", d);
      return;
    }
    if (!changed) return; // an older or equal version: the local state is already newer
    const d = { channel: ch.name, slot: msg.slot, reason: msg.reason, cursor: msg.cursor, replay };
    ch._emit("availability:updated", d);
    this._emit("availability:updated", d);
  }

  _onResult(msg) {
    const req = this._pending.get(msg.id);
    if (msg.slot) this._applyEverywhere(msg.slot);
    if (msg.ok === false && msg.error?.slot) this._applyEverywhere(msg.error.slot);
    if (!req) return;
    if (msg.ok === false && msg.error?.code === "UNAUTHORIZED" && this.getToken && !req.authRetried) {
      // The token expired under us (a tab asleep past its refresh): refresh, then try once more.
      req.authRetried = true;
      req.sent = false;
      this._refreshToken().then(() => {
        if (this._pending.has(req.id) && this._isOpen() && !req.sent) this._sendRequest(req);
      });
      return;
    }
    if (msg.ok === false) this._settle(req, false, msg.error ?? { code: "ERROR", message: "request failed" });
    else {
      const { type, id, ...rest } = msg;
      this._settle(req, true, rest);
    }
  }

  _onError(msg) {
    const err = msg.error ?? { code: "ERROR", message: "error" };
    if (msg.id != null && this._subAcks.has(msg.id)) {
      const ch = this._subAcks.get(msg.id);
      this._subAcks.delete(msg.id);
      if (err.code === "UNKNOWN_CHANNEL" || err.code === "TOO_MANY_SUBSCRIPTIONS") {
        ch.status = "error";
        ch.error = new RealtimeError(err);
        ch._rejectReady(ch.error);
      } else if (this._isOpen()) {
        // RATE_LIMITED or a transient refusal: try this channel again shortly.
        this._setTimeout(() => {
          if (ch.status === "pending" && this._isOpen() && this.channels.get(ch.name) === ch) this._sendSubscribe(ch);
        }, backoffDelay(2, { baseDelay: this.options.baseDelay, maxDelay: this.options.maxDelay, random: this._random }) + 100);
      }
      this._emit("error", { code: err.code, error: new RealtimeError(err), channel: ch.name });
      this._maybeLive();
      return;
    }
    const req = msg.id != null ? this._pending.get(msg.id) : null;
    if (req) this._settle(req, false, err);
    if (err.code === "UNAUTHORIZED" && this.getToken) this._refreshToken();
    if (!req) this._emit("error", { code: err.code, error: new RealtimeError(err) });
  }

  _applyEverywhere(slot) {
    for (const ch of this.channels.values()) {
      if (ch.status === "closed") continue;
      const related =
        ch.slots.has(String(slot.id)) ||
        ch.name === `service:${slot.service_id}` ||
        ch.name === `vendor:${slot.vendor_id}`;
      if (related && ch._apply(slot)) {
        const d = { channel: ch.name, slot, reason: "result", cursor: ch.cursor, replay: false };
        ch._emit("availability:updated", d);
        this._emit("availability:updated", d);
      }
    }
  }

  _channel(name) {
    if (name == null) return undefined;
    const ch = this.channels.get(name) ?? this._aliases.get(name);
    if (ch) return ch;
    const lower = String(name).toLowerCase();
    for (const c of this.channels.values()) if (c.name.toLowerCase() === lower) return c;
    return undefined;
  }

  // --- requests ----------------------------------------------------------------------------------

  _request(type, fields, { resend }) {
    if (!this._wanted) this.connect();
    return new Promise((resolve, reject) => {
      const id = this._nextId();
      const req = { id, type, msg: { type, id, ...fields }, resolve, reject, resend, sent: false, http: false };
      req.timer = this._setTimeout(
        () => this._fail(req, { code: "TIMEOUT", message: `no answer to ${type} within ${this.options.requestTimeout} ms` }),
        this.options.requestTimeout,
      );
      this._pending.set(id, req);
      if (this._isOpen()) this._sendRequest(req);
    });
  }

  _sendRequest(req) {
    req.sent = this._send(req.msg);
  }

  _settle(req, ok, value) {
    if (!this._pending.has(req.id)) return;
    this._pending.delete(req.id);
    if (req.timer != null) this._clearTimeout(req.timer);
    if (ok) req.resolve(value);
    else req.reject(value instanceof RealtimeError ? value : new RealtimeError(value));
  }

  _fail(req, error) {
    this._settle(req, false, error);
  }

  _useHttp() {
    const socket = this._isOpen() && this.transport === TRANSPORT.WEBSOCKET;
    return !socket && this.options.httpFallback && !!this._fetch && !!this.httpUrl;
  }

  // One HTTP request; `body` undefined for a read.
  async _http(method, path, body, idempotencyKey) {
    if (!this._fetch || !this.httpUrl) throw new RealtimeError({ code: "NETWORK_ERROR", message: "no HTTP: pass { fetch, httpUrl }" });
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let token = this._token;
    if (!token && this.getToken) {
      try {
        token = await this.getToken({ reason: "http" });
      } catch {
        token = null;
      }
    }
    if (token) headers.authorization = `Bearer ${token}`;
    if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
    let res;
    try {
      const init = { method, headers };
      if (body !== undefined) init.body = JSON.stringify(body);
      res = await this._fetch(this.httpUrl + path, init);
    } catch (err) {
      throw new RealtimeError({ code: "NETWORK_ERROR", message: String(err?.message ?? err) });
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      const err = data?.error ?? { code: `HTTP_${res.status}`, message: res.statusText || `HTTP ${res.status}` };
      if (err.slot) this._applyEverywhere(err.slot);
      throw new RealtimeError({ status: res.status, ...err });
    }
    return data ?? {};
  }

  _absorb(result) {
    if (result?.slot) this._applyEverywhere(result.slot);
    return result;
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

  // --- page lifecycle ----------------------------------------------------------------------------

  _installListeners() {
    this._removeListeners();
    const add = (target, type, fn) => {
      if (!target || typeof target.addEventListener !== "function") return;
      target.addEventListener(type, fn);
      this._listeners.push(() => target.removeEventListener(type, fn));
    };
    add(this._document, "visibilitychange", () => {
      if (this._document.visibilityState !== "hidden") this.resync("visible");
    });
    add(this._document, "resume", () => this.resync("resume"));
    add(this._window, "pageshow", (ev) => {
      if (ev && ev.persisted) this.resync("pageshow");
    });
    add(this._window, "online", () => this.resync("online"));
    add(this._window, "offline", () => {
      if (this._sseCarries()) return; // the EventSource reports a lost connection itself
      if (!this._ws) this._setState(STATE.OFFLINE);
      else this._sendPing(true); // the socket may survive a blip; let the heartbeat decide
    });
  }

  _removeListeners() {
    for (const off of this._listeners.splice(0)) off();
  }
}

/** Shorthand: `connect({url, getToken})` makes a client and opens it. */
export function connect(options = {}) {
  return new RealtimeClient(options).connect();
}

export default RealtimeClient;
