// Unit tests of realtime/static/realtime.js with Node's built-in runner: `node --test tests/js/`.
import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { backoffDelay, isNewer, tokenExpiry, RealtimeClient, RealtimeError, STATE } from "../../realtime/static/realtime.js";
import { FakeClock, makeClient, slot, goLive, flush, jwt } from "./helpers.mjs";

describe("backoff", () => {
  test("full jitter stays within [0, min(cap, base * 2^attempt))", () => {
    const o = { baseDelay: 500, maxDelay: 30000 };
    for (let attempt = 0; attempt < 40; attempt++) {
      const cap = Math.min(30000, 500 * 2 ** attempt);
      assert.equal(backoffDelay(attempt, { ...o, random: () => 0 }), 0);
      const hi = backoffDelay(attempt, { ...o, random: () => 0.9999999 });
      assert.ok(hi < cap && hi >= cap - 1, `attempt ${attempt}: ${hi} vs cap ${cap}`);
      const mid = backoffDelay(attempt, { ...o, random: () => 0.5 });
      assert.equal(mid, Math.floor(cap / 2));
    }
  });

  test("never exceeds the cap, even for absurd attempts or a bad random", () => {
    for (const attempt of [50, 1000, 1e9, -3, NaN]) {
      for (const r of [0, 0.3, 0.999, 1, 5, -1, NaN]) {
        const d = backoffDelay(attempt, { baseDelay: 500, maxDelay: 30000, random: () => r });
        assert.ok(d >= 0 && d < 30000, `attempt ${attempt} random ${r}: ${d}`);
      }
    }
  });

  test("the jitter is spread over the whole window (no reconnect storm)", () => {
    // 2,000 clients dropped by the same restart, at attempt 3 (window 4 s): their reconnects
    // must be spread evenly, not bunched at the same instant.
    const delays = Array.from({ length: 2000 }, () => backoffDelay(3, { baseDelay: 500, maxDelay: 30000 }));
    const buckets = new Array(10).fill(0);
    for (const d of delays) buckets[Math.floor(d / 400)]++;
    for (const b of buckets) assert.ok(b > 120 && b < 280, `uneven spread: ${buckets}`);
    assert.ok(Math.min(...delays) < 100 && Math.max(...delays) > 3900);
  });

  test("a client's successive reconnects use growing, capped, jittered delays", () => {
    const { client, clock, WS } = makeClient({ random: () => 0.5, baseDelay: 1000, maxDelay: 8000 });
    client.connect();
    const seen = [];
    for (let i = 0; i < 7; i++) {
      WS.latest().serverClose(1006);
      seen.push(reconnectDelay(clock));
      clock.advance(reconnectDelay(clock));
    }
    assert.deepEqual(seen, [500, 1000, 2000, 4000, 4000, 4000, 4000]);
    assert.equal(WS.sockets.length, 8);
  });
});

// The pending reconnect timer's delay (the heartbeat tick also has a timer: pick the other).
function reconnectDelay(clock) {
  let best = null;
  for (const tm of clock.timers.values()) if (tm.fn.toString().includes("_open")) best = tm.at - clock.t;
  return best;
}

describe("local state", () => {
  test("isNewer compares versions numerically", () => {
    assert.equal(isNewer(slot("a", 2), slot("a", 1)), true);
    assert.equal(isNewer(slot("a", 1), slot("a", 1)), false);
    assert.equal(isNewer(slot("a", 9), slot("a", 10)), false);
    assert.equal(isNewer(slot("a", 1), undefined), true);
  });

  test("an update is applied only when its version is newer", () => {
    const { client, WS } = makeClient();
    const ch = client.subscribe("service:svc");
    const ws = goLive(WS, { "service:svc": [slot("s1", 1)] });
    const events = [];
    ch.on("availability:updated", (e) => events.push(e.slot.version));
    ws.serverSend({ type: "availability:updated", channel: "service:svc", cursor: "3@e", reason: "booked", slot: slot("s1", 3, { available: 2 }) });
    ws.serverSend({ type: "availability:updated", channel: "service:svc", cursor: "2@e", reason: "booked", slot: slot("s1", 2, { available: 3 }) });
    ws.serverSend({ type: "availability:updated", channel: "service:svc", cursor: "3@e", reason: "booked", slot: slot("s1", 3, { available: 2 }) });
    assert.equal(ch.get("s1").version, 3);
    assert.equal(ch.get("s1").available, 2);
    assert.deepEqual(events, [3]);
  });

  test("a snapshot replaces the state; slots outside the window are ignored", () => {
    const { client, WS } = makeClient();
    const ch = client.subscribe("vendor:ven", {
      from: "2026-11-23T00:00:00Z",
      to: "2026-11-24T00:00:00Z",
      slots: [slot("old", 5)],
    });
    assert.equal(ch.get("old").version, 5);
    const ws = goLive(WS, { "vendor:ven": [slot("s1", 1), slot("s2", 1)] });
    assert.equal(ch.get("old"), undefined);
    assert.deepEqual(ch.list().map((s) => s.id), ["s1", "s2"]);
    ws.serverSend({
      type: "availability:updated", channel: "vendor:ven", cursor: "1@e", reason: "created",
      slot: slot("later", 1, { starts_at: "2026-12-01T10:00:00Z", ends_at: "2026-12-01T11:00:00Z" }),
    });
    assert.equal(ch.get("later"), undefined);
    assert.equal(ch.cursor, "1@e");
  });

  test("subscribe sends since/from/to; presence and conflicts are delivered", () => {
    const { client, WS } = makeClient();
    const ch = client.subscribe("service:svc", { since: "7@e", from: "2026-11-23T00:00:00Z", to: "2026-11-30T00:00:00Z" });
    const ws = WS.latest();
    ws.serverOpen();
    const sub = ws.last("subscribe");
    assert.equal(sub.channel, "service:svc");
    assert.equal(sub.since, "7@e");
    assert.equal(sub.from, "2026-11-23T00:00:00Z");
    assert.equal(sub.to, "2026-11-30T00:00:00Z");
    const got = [];
    ch.on("presence", (e) => got.push(["presence", e.count]));
    ch.on("conflict:detected", (e) => got.push(["conflict", e.slot.id, e.alternatives.length]));
    ws.serverSend({ type: "subscribed", id: sub.id, channel: "service:svc", cursor: "7@e", events: [] });
    ws.serverSend({ type: "presence", channel: "service:svc", count: 3 });
    ws.serverSend({ type: "conflict:detected", channel: "service:svc", cursor: "8@e", slot: slot("s1", 4, { available: 0 }), quantity: 1, alternatives: [slot("s2", 1)] });
    assert.deepEqual(got, [["presence", 3], ["conflict", "s1", 1]]);
    assert.equal(ch.presence, 3);
    assert.equal(ch.cursor, "8@e");
    assert.equal(ch.get("s1").available, 0);
  });

  test("the server's canonical channel name is matched to ours", () => {
    const { client, WS } = makeClient();
    const ch = client.subscribe("service:ABC");
    const ws = WS.latest();
    ws.serverOpen();
    ws.serverSend({ type: "subscribed", id: ws.last("subscribe").id, channel: "service:abc", cursor: "1@e", snapshot: { slots: [slot("s1", 1)] } });
    ws.serverSend({ type: "availability:updated", channel: "service:abc", cursor: "2@e", reason: "booked", slot: slot("s1", 2) });
    assert.equal(ch.get("s1").version, 2);
    assert.equal(client.state, STATE.LIVE);
  });
});

describe("resume", () => {
  test("a reconnect resubscribes every channel from its last cursor and applies the missed events in order", () => {
    const { client, clock, WS, states } = makeClient();
    const a = client.subscribe("service:a");
    const b = client.subscribe("vendor:v");
    let ws = goLive(WS, { "service:a": [slot("s1", 1)], "vendor:v": [] }, "10@e");
    assert.equal(client.state, "live");
    ws.serverSend({ type: "availability:updated", channel: "service:a", cursor: "11@e", reason: "booked", slot: slot("s1", 2, { available: 3 }) });
    ws.serverSend({ type: "availability:updated", channel: "vendor:v", cursor: "12@e", reason: "booked", slot: slot("x", 1) });
    ws.serverClose(1001);
    assert.equal(client.state, "reconnecting");
    clock.advance(reconnectDelay(clock));
    ws = WS.latest();
    assert.notEqual(ws, WS.sockets[0]);
    ws.serverOpen();
    assert.equal(client.state, "reconnecting", "not live until every channel is back");
    const subs = Object.fromEntries(ws.sentOf("subscribe").map((m) => [m.channel, m]));
    assert.equal(subs["service:a"].since, "11@e");
    assert.equal(subs["vendor:v"].since, "12@e");
    const order = [];
    a.on("availability:updated", (e) => order.push(e.slot.version));
    ws.serverSend({
      type: "subscribed", id: subs["service:a"].id, channel: "service:a", cursor: "15@e",
      events: [
        { type: "availability:updated", channel: "service:a", cursor: "13@e", reason: "booked", slot: slot("s1", 3, { available: 2 }) },
        { type: "availability:updated", channel: "service:a", cursor: "14@e", reason: "cancelled", slot: slot("s1", 4, { available: 3 }) },
      ],
    });
    ws.serverSend({ type: "subscribed", id: subs["vendor:v"].id, channel: "vendor:v", cursor: "15@e", events: [] });
    assert.deepEqual(order, [3, 4]);
    assert.equal(a.get("s1").available, 3);
    assert.equal(a.cursor, "15@e");
    assert.equal(b.cursor, "15@e");
    assert.equal(client.state, "live");
    assert.deepEqual(states, ["reconnecting", "live", "reconnecting", "live"]);
  });

  test("an unsubscribed channel is not resumed", async () => {
    const { client, clock, WS } = makeClient();
    client.subscribe("service:a");
    client.subscribe("service:b");
    let ws = goLive(WS);
    client.unsubscribe("service:b");
    assert.equal(ws.last("unsubscribe").channel, "service:b");
    ws.serverClose(1006);
    clock.advance(reconnectDelay(clock));
    ws = WS.latest();
    ws.serverOpen();
    assert.deepEqual(ws.sentOf("subscribe").map((m) => m.channel), ["service:a"]);
  });
});

describe("requests", () => {
  test("book resolves with the result matched by id", async () => {
    const { client, WS } = makeClient();
    const ch = client.subscribe("service:svc");
    const ws = goLive(WS, { "service:svc": [slot("s1", 1)] });
    const p = client.book("s1");
    const msg = ws.last("book");
    assert.equal(msg.slot_id, "s1");
    assert.equal("quantity" in msg, false, "no quantity given: the server books 1");
    assert.ok(msg.idempotency_key);
    ws.serverSend({ type: "result", id: "other", ok: true });
    ws.serverSend({ type: "result", id: msg.id, ok: true, booking: { id: "b1", slot_id: "s1" }, slot: slot("s1", 2, { available: 3 }) });
    const res = await p;
    assert.equal(res.booking.id, "b1");
    assert.equal(ch.get("s1").version, 2, "the result's slot updates the local state");
  });

  test("a lost race rejects with the error object (code, slot, alternatives)", async () => {
    const { client, WS } = makeClient();
    client.subscribe("service:svc");
    const ws = goLive(WS, { "service:svc": [slot("s1", 1)] });
    const p = client.book("s1");
    const id = ws.last("book").id;
    ws.serverSend({
      type: "result", id, ok: false,
      error: { code: "BOOKING_CONFLICT", message: "not enough available", slot: slot("s1", 2, { available: 0 }), alternatives: [slot("s2", 1)] },
    });
    await assert.rejects(p, (err) => {
      assert.ok(err instanceof RealtimeError);
      assert.equal(err.code, "BOOKING_CONFLICT");
      assert.equal(err.alternatives[0].id, "s2");
      assert.equal(err.slot.available, 0);
      assert.equal(err.error.code, "BOOKING_CONFLICT");
      return true;
    });
    assert.equal(client.getSlot("s1").available, 0);
  });

  test("a booking in flight when the connection drops is re-sent with the same idempotency key; a hold is not", async () => {
    const { client, clock, WS } = makeClient();
    client.subscribe("service:svc");
    let ws = goLive(WS);
    const booking = client.book("s1");
    const hold = client.hold("s1", { ttlSeconds: 60 });
    const first = ws.last("book");
    assert.equal(ws.last("hold").ttl_seconds, 60);
    ws.serverClose(1006);
    await assert.rejects(hold, { code: "CONNECTION_LOST" });
    clock.advance(reconnectDelay(clock));
    ws = goLive(WS);
    const again = ws.last("book");
    assert.equal(again.id, first.id);
    assert.equal(again.idempotency_key, first.idempotency_key);
    ws.serverSend({ type: "result", id: again.id, ok: true, booking: { id: "b1" } });
    assert.equal((await booking).booking.id, "b1");
  });

  test("requests time out", async () => {
    const { client, clock, WS } = makeClient({ requestTimeout: 5000 });
    client.subscribe("service:svc");
    goLive(WS);
    const p = client.cancel("b1");
    clock.advance(5001);
    await assert.rejects(p, { code: "TIMEOUT" });
  });

  test("when the socket is not live, book goes over HTTP with an Idempotency-Key", async () => {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url, init });
      return { ok: true, status: 201, json: async () => ({ booking: { id: "b9" }, slot: slot("s1", 2) }) };
    };
    const { client } = makeClient({ fetch, url: "ws://example.test:8123/ws" });
    client.subscribe("service:svc");
    const res = await client.book("s1", { customerId: "c1" });
    assert.equal(res.booking.id, "b9");
    assert.equal(calls[0].url, "http://example.test:8123/api/bookings");
    assert.equal(calls[0].init.method, "POST");
    assert.ok(calls[0].init.headers["idempotency-key"]);
    assert.deepEqual(JSON.parse(calls[0].init.body), { slot_id: "s1", customer_id: "c1" });
  });

  test("confirming a hold sends no quantity (the server books the hold's own); a given quantity is sent", async () => {
    const bodies = [];
    const fetch = async (url, init) => {
      bodies.push(JSON.parse(init.body));
      return { ok: true, status: 201, json: async () => ({ booking: { id: "b1" } }) };
    };
    const http = makeClient({ fetch }).client;
    await http.book("s1", { holdId: "h1" });
    await http.book("s1", { quantity: 3 });
    assert.deepEqual(bodies, [{ slot_id: "s1", hold_id: "h1" }, { slot_id: "s1", quantity: 3 }]);

    const { client, WS } = makeClient();
    client.subscribe("service:svc");
    const ws = goLive(WS);
    client.book("s1", { holdId: "h1" });
    const confirm = ws.last("book");
    assert.equal(confirm.hold_id, "h1");
    assert.equal("quantity" in confirm, false);
    client.book("s1", { quantity: 2 });
    assert.equal(ws.last("book").quantity, 2);
  });

  test("an HTTP conflict rejects with the contract's error object", async () => {
    const fetch = async () => ({
      ok: false, status: 409,
      json: async () => ({ error: { code: "BOOKING_CONFLICT", message: "taken", slot: slot("s1", 3, { available: 0 }), alternatives: [] } }),
    });
    const { client } = makeClient({ fetch });
    await assert.rejects(client.book("s1"), (e) => e.code === "BOOKING_CONFLICT" && e.status === 409 && e.slot.version === 3);
  });
});

describe("heartbeat", () => {
  test("a silent connection is pinged, and dropped when the pong does not come", () => {
    const { client, clock, WS } = makeClient({ heartbeatInterval: 10000, pongTimeout: 4000 });
    client.subscribe("service:svc");
    const ws = goLive(WS);
    clock.advance(9000);
    assert.equal(ws.sentOf("ping").length, 0);
    clock.advance(2000);
    assert.equal(ws.sentOf("ping").length, 1);
    clock.advance(4100);
    assert.ok(ws.closedWith, "the dead socket was closed");
    assert.equal(client.state, "reconnecting");
    clock.advance(reconnectDelay(clock));
    assert.equal(WS.sockets.length, 2);
  });

  test("an answered ping keeps the connection", () => {
    const { client, clock, WS } = makeClient({ heartbeatInterval: 10000, pongTimeout: 4000 });
    client.subscribe("service:svc");
    const ws = goLive(WS);
    for (let i = 0; i < 10; i++) {
      clock.advance(2000);
      const p = ws.last("ping");
      if (p && !p.answered) {
        p.answered = true;
        ws.serverSend({ type: "pong", id: p.id });
      }
    }
    assert.ok(ws.sentOf("ping").length >= 1);
    assert.equal(ws.closedWith, null);
    assert.equal(client.state, "live");
  });

  test("throttled background timers do not kill a healthy connection", () => {
    // A background tab: the ping went out, then the page's timers did not run for five
    // minutes (while the pong sat in the queue). The late tick must not call it dead.
    const { client, clock, WS } = makeClient({ heartbeatInterval: 10000, pongTimeout: 4000 });
    client.subscribe("service:svc");
    const ws = goLive(WS);
    clock.advance(11000);
    const ping = ws.last("ping");
    assert.ok(ping);
    clock.jump(5 * 60 * 1000);
    clock.fireNext(); // the throttled tick finally runs
    assert.equal(ws.closedWith, null, "a late tick alone is no evidence of a dead socket");
    ws.serverSend({ type: "pong", id: ping.id }); // the queued pong is delivered
    clock.advance(3000);
    assert.equal(ws.closedWith, null);
    assert.equal(client.state, "live");
  });

  test("throttled timers do not hide a dead connection either: it is dropped after a short grace", () => {
    const { client, clock, WS } = makeClient({ heartbeatInterval: 10000, pongTimeout: 4000 });
    client.subscribe("service:svc");
    const ws = goLive(WS);
    clock.advance(11000);
    clock.jump(5 * 60 * 1000);
    clock.fireNext();
    assert.equal(ws.closedWith, null);
    clock.advance(1000); // the grace check: still nothing from the server
    assert.ok(ws.closedWith);
    assert.equal(client.state, "reconnecting");
  });

  test("becoming visible checks the connection at once", () => {
    const { client, clock, WS, document } = makeClient({ heartbeatInterval: 10000, pongTimeout: 4000 });
    client.subscribe("service:svc");
    const ws = goLive(WS);
    document.visibilityState = "hidden";
    document.dispatch("visibilitychange");
    assert.equal(ws.sentOf("ping").length, 0);
    clock.jump(10 * 60 * 1000); // hidden for ten minutes, timers starved
    document.visibilityState = "visible";
    document.dispatch("visibilitychange");
    const ping = ws.last("ping");
    assert.ok(ping, "a ping went out as soon as the tab was visible");
    clock.advance(4100);
    assert.ok(ws.closedWith, "no pong within pongTimeout: dropped and reconnecting");
    assert.equal(client.state, "reconnecting");
  });

  test("becoming visible while disconnected reconnects right away, with jitter", () => {
    const { client, clock, WS, document } = makeClient({ baseDelay: 500, maxDelay: 30000 });
    client.subscribe("service:svc");
    goLive(WS);
    for (let i = 0; i < 6; i++) {
      WS.latest().serverClose(1006);
      clock.advance(reconnectDelay(clock));
    }
    WS.latest().serverClose(1006);
    assert.ok(reconnectDelay(clock) >= 8000, "deep in the backoff");
    document.dispatch("visibilitychange");
    assert.ok(reconnectDelay(clock) < 500, `came back after ${reconnectDelay(clock)} ms`);
  });

  test("a socket stuck connecting is abandoned", () => {
    const { client, clock, WS } = makeClient({ connectTimeout: 5000 });
    client.subscribe("service:svc");
    clock.advance(6000);
    assert.ok(WS.sockets[0].closedWith);
    assert.equal(client.state, "reconnecting");
  });
});

describe("connection state and network", () => {
  test("offline while the browser has no network, reconnecting when it comes back", () => {
    const { client, clock, WS, window, navigator, states } = makeClient();
    client.subscribe("service:svc");
    goLive(WS);
    navigator.onLine = false;
    window.dispatch("offline");
    WS.latest().serverClose(1006);
    assert.equal(client.state, "offline");
    navigator.onLine = true;
    window.dispatch("online");
    assert.equal(client.state, "reconnecting");
    clock.advance(reconnectDelay(clock));
    goLive(WS);
    assert.deepEqual(states, ["reconnecting", "live", "offline", "reconnecting", "live"]);
  });

  test("close() stops everything and reports offline", async () => {
    const { client, clock, WS } = makeClient();
    client.subscribe("service:svc");
    const ws = goLive(WS);
    const p = client.cancel("b1");
    client.close();
    await assert.rejects(p, { code: "CLIENT_CLOSED" });
    assert.equal(client.state, "offline");
    assert.equal(ws.closedWith.code, 1000);
    clock.advance(120000);
    assert.equal(WS.sockets.length, 1);
  });

  test("an error frame for a subscribe marks that channel and does not block live", async () => {
    const { client, WS } = makeClient();
    const ch = client.subscribe("service:nope");
    const ws = WS.latest();
    ws.serverOpen();
    ws.serverSend({ type: "error", id: ws.last("subscribe").id, error: { code: "UNKNOWN_CHANNEL", message: "no" } });
    await assert.rejects(ch.ready, { code: "UNKNOWN_CHANNEL" });
    assert.equal(client.state, "live");
  });
});

describe("tokens", () => {
  test("tokenExpiry reads exp", () => {
    assert.equal(tokenExpiry(jwt({ sub: "x", exp: 1000 })), 1000000);
    assert.equal(tokenExpiry("nope"), null);
  });

  test("the token goes on the URL, and is refreshed with `auth` before it expires", async () => {
    const clock = new FakeClock();
    let n = 0;
    const getToken = async () => jwt({ sub: "c1", n: ++n, exp: Math.floor(clock.t / 1000) + 300 });
    const { client, WS } = makeClient({ clock, getToken, refreshMargin: 60000 });
    client.subscribe("service:svc");
    await flush();
    const ws = WS.latest();
    assert.match(ws.url, /\?token=/);
    goLive(WS);
    for (let i = 0; i < 60; i++) {
      clock.advance(4000);
      const p = ws.last("ping");
      if (p && !p.answered) {
        p.answered = true;
        ws.serverSend({ type: "pong", id: p.id });
      }
      await flush();
    }
    const auth = ws.sentOf("auth");
    assert.equal(auth.length, 1, "one refresh in 240 s of a 300 s token with a 60 s margin");
    assert.notEqual(auth[0].token, decodeURIComponent(ws.url.split("token=")[1]));
    assert.equal(ws.closedWith, null, "the socket survived the refresh");
  });

  test("a 1008 close (bad token) fetches a fresh token before reconnecting", async () => {
    let n = 0;
    const getToken = async () => `tok${++n}`;
    const { client, clock, WS } = makeClient({ getToken });
    client.subscribe("service:svc");
    await flush();
    goLive(WS);
    WS.latest().serverClose(1008, "token expired");
    clock.advance(reconnectDelay(clock));
    await flush();
    assert.match(WS.latest().url, /token=tok2/);
  });
});

test("a booking refused with UNAUTHORIZED (expired token) refreshes the token and is retried once", async () => {
  let n = 0;
  const getToken = async () => `tok${++n}`;
  const { client, WS } = makeClient({ getToken });
  client.subscribe("service:svc");
  await flush();
  const ws = goLive(WS);
  const p = client.book("s1");
  const first = ws.last("book");
  ws.serverSend({ type: "result", id: first.id, ok: false, error: { code: "UNAUTHORIZED", message: "expired" } });
  await flush();
  const kinds = ws.sent.map((m) => m.type);
  assert.deepEqual(kinds.slice(-2), ["auth", "book"], "auth goes before the retried booking");
  assert.equal(ws.last("auth").token, "tok2");
  assert.equal(ws.last("book").idempotency_key, first.idempotency_key);
  ws.serverSend({ type: "result", id: first.id, ok: false, error: { code: "UNAUTHORIZED", message: "still" } });
  await assert.rejects(p, { code: "UNAUTHORIZED" });
});

test("the module works without a DOM and derives nothing it cannot", () => {
  const c = new RealtimeClient({ url: "wss://x.test/ws", WebSocket: class {}, document: null, window: null });
  assert.equal(c.httpUrl, "https://x.test");
  assert.equal(c.state, "offline");
});
