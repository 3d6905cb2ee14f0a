// Test doubles for realtime.js: a fake clock (wall clock and timers move separately, so a test
// can play a throttled background tab), a fake WebSocket, a fake EventSource, and a fake
// document/window.
import { RealtimeClient } from "../../realtime/static/realtime.js";

export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.now = () => this.t;
    this.setTimeout = (fn, delay) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + Math.max(0, delay ?? 0), fn, delay });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Move time forward by `ms`, firing due timers in order (as a foreground tab would). */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, tm] of this.timers) if (tm.at <= end && (!next || tm.at < next[1].at)) next = [id, tm];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }

  /** Move only the wall clock (a frozen or throttled tab: no timer ran meanwhile). */
  jump(ms) {
    this.t += ms;
  }

  /** Fire the earliest pending timer now, whatever its due time (a late, throttled timer). */
  fireNext() {
    let next = null;
    for (const [id, tm] of this.timers) if (!next || tm.at < next[1].at) next = [id, tm];
    if (!next) return false;
    this.timers.delete(next[0]);
    next[1].fn();
    return true;
  }

  /** Delays of the pending timers, sorted. */
  pending() {
    return [...this.timers.values()].map((tm) => tm.at - this.t).sort((a, b) => a - b);
  }
}

export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(JSON.parse(data));
    }
    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }
    // --- driven by the test, as the server would ---
    serverOpen() {
      this.readyState = 1;
      this.onopen?.({});
    }
    serverSend(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    serverClose(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    sentOf(type) {
      return this.sent.filter((m) => m.type === type);
    }
    last(type) {
      const list = this.sentOf(type);
      return list[list.length - 1];
    }
  }
  FakeWebSocket.sockets = sockets;
  FakeWebSocket.latest = () => sockets[sockets.length - 1];
  return FakeWebSocket;
}

/** An EventSource driven by the test: as the server sends, and as the browser reacts. */
export function fakeEventSourceClass() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.lastEventId = "";
      this.closed = false;
      this.listeners = new Map();
      sources.push(this);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type).add(fn);
    }
    removeEventListener(type, fn) {
      this.listeners.get(type)?.delete(fn);
    }
    close() {
      this.closed = true;
      this.readyState = 2;
    }
    // --- driven by the test ---
    get params() {
      return new URL(this.url).searchParams;
    }
    serverOpen() {
      this.readyState = 1;
      this.onopen?.({});
    }
    /** One event; `id` (a cursor) is remembered as the browser does, for Last-Event-ID. */
    serverEvent(type, obj, id) {
      if (id != null) this.lastEventId = id;
      for (const fn of this.listeners.get(type) ?? []) fn({ type, data: JSON.stringify(obj), lastEventId: this.lastEventId });
    }
    /** Every channel's `subscribed` event, with a snapshot. */
    serverSubscribed(slotsByChannel = {}, cursor = "5@e") {
      for (const channel of this.params.getAll("channel")) {
        this.serverEvent("subscribed", { type: "subscribed", channel, cursor, snapshot: { slots: slotsByChannel[channel] ?? [] } });
      }
    }
    /** The connection dropped: the browser reconnects by itself (readyState CONNECTING). */
    serverDrop() {
      this.readyState = 0;
      this.onerror?.({});
    }
    /** The server answered with an error: the browser gives up (readyState CLOSED). */
    serverRefuse() {
      this.readyState = 2;
      this.onerror?.({});
    }
  }
  FakeEventSource.sources = sources;
  FakeEventSource.latest = () => sources[sources.length - 1];
  return FakeEventSource;
}

export class FakeTarget {
  constructor(extra = {}) {
    this.listeners = new Map();
    Object.assign(this, extra);
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type, ev = {}) {
    for (const fn of this.listeners.get(type) ?? []) fn(ev);
  }
}

/** A client wired to fakes; returns everything a test needs. `sse: true` gives it an
 * EventSource (`ES`), which it otherwise lacks (as in Node). */
export function makeClient({ sse = false, ...options } = {}) {
  const clock = options.clock ?? new FakeClock();
  const WS = fakeWebSocketClass();
  const ES = fakeEventSourceClass();
  const document = new FakeTarget({ visibilityState: "visible" });
  const window = new FakeTarget();
  const navigator = { onLine: true };
  const client = new RealtimeClient({
    url: "ws://example.test/ws",
    WebSocket: WS,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    document,
    window,
    navigator,
    fetch: null,
    EventSource: sse ? ES : null,
    ...options,
  });
  const states = [];
  client.on("state", ({ state }) => states.push(state));
  const transports = [];
  client.on("transport", ({ transport }) => transports.push(transport));
  return { client, clock, WS, ES, document, window, navigator, states, transports };
}

export function slot(id, version, extra = {}) {
  return {
    id,
    service_id: "svc",
    vendor_id: "ven",
    starts_at: "2026-11-23T10:00:00Z",
    ends_at: "2026-11-23T11:00:00Z",
    capacity: 4,
    booked: 0,
    held: 0,
    available: 4,
    version,
    ...extra,
  };
}

/** Open the latest socket and answer every pending subscribe with a snapshot. */
export function goLive(WS, slotsByChannel = {}, cursor = "0@e") {
  const ws = WS.latest();
  ws.serverOpen();
  for (const m of ws.sentOf("subscribe")) {
    ws.serverSend({ type: "subscribed", id: m.id, channel: m.channel, cursor, snapshot: { slots: slotsByChannel[m.channel] ?? [] } });
  }
  return ws;
}

export const flush = () => new Promise((r) => setImmediate(r));

export function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.sig`;
}
